// The paper's k6 spike test: ramping arrival rate against the workload service.
// `starvation load` with its defaults runs the same profile:
//   starvation load --url http://HOST:5000/test-threadpool
// Run with k6 (Prometheus remote-write output, trends as native histograms):
//   K6_PROMETHEUS_RW_SERVER_URL=http://localhost:9090/api/v1/write \
//   K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM=true \
//   k6 run -o experimental-prometheus-rw -e BASE_URL=http://localhost:5000 scenarios/paper-spike.k6.js
// Every setting below is the paper's default and can be changed with -e NAME=VALUE (this is how
// `starvation experiment --load k6` passes a profile in): URL (the whole URL, else
// BASE_URL + /test-threadpool), STAGES (JSON, e.g. [{"target":15,"duration":"30s"}]; k6 takes
// integer targets only), START_RATE, TIME_UNIT, PRE_ALLOCATED_VUS, MAX_VUS, GRACEFUL_STOP,
// TIMEOUT, EXPECT_STATUS, TESTID.
import http from 'k6/http';
import { check } from 'k6';

const env = (name, fallback) => (__ENV[name] === undefined || __ENV[name] === '' ? fallback : __ENV[name]);
const BASE_URL = env('BASE_URL', 'http://localhost:5000');
const URL = env('URL', `${BASE_URL}/test-threadpool`);
const EXPECT_STATUS = Number(env('EXPECT_STATUS', 200));
const PAPER_STAGES = [
  { target: 15, duration: '30s' },
  { target: 20, duration: '30s' },
  { target: 30, duration: '30s' },
  { target: 35, duration: '30s' },
  { target: 5, duration: '30s' },
];

export const options = {
  scenarios: {
    default: {
      executor: 'ramping-arrival-rate',
      startRate: Number(env('START_RATE', 1)),
      timeUnit: env('TIME_UNIT', '1s'),
      preAllocatedVUs: Number(env('PRE_ALLOCATED_VUS', 50)),
      maxVUs: Number(env('MAX_VUS', 1000)),
      stages: __ENV.STAGES ? JSON.parse(__ENV.STAGES) : PAPER_STAGES,
      gracefulStop: env('GRACEFUL_STOP', '30s'),
    },
  },
  tags: { testid: env('TESTID', 'threadloadtest') },
};

const TIMEOUT = env('TIMEOUT', '60s');
const CHECK = `status is ${EXPECT_STATUS}`;

export default function () {
  const res = http.get(URL, { timeout: TIMEOUT });
  check(res, { [CHECK]: (r) => r.status === EXPECT_STATUS });
}
