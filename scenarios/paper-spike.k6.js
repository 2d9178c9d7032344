// The paper's k6 spike test: ramping arrival rate against the workload service.
// `starvation load` with its defaults runs the same profile:
//   starvation load --url http://HOST:5000/test-threadpool
// Run with k6 (Prometheus remote-write output, trends as native histograms):
//   K6_PROMETHEUS_RW_SERVER_URL=http://localhost:9090/api/v1/write \
//   K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM=true \
//   k6 run -o experimental-prometheus-rw -e BASE_URL=http://localhost:5000 scenarios/paper-spike.k6.js
import http from 'k6/http';
import { check } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'http://localhost:5000';

export const options = {
  scenarios: {
    default: {
      executor: 'ramping-arrival-rate',
      startRate: 1,
      timeUnit: '1s',
      preAllocatedVUs: 50,
      maxVUs: 1000,
      stages: [
        { target: 15, duration: '30s' },
        { target: 20, duration: '30s' },
        { target: 30, duration: '30s' },
        { target: 35, duration: '30s' },
        { target: 5, duration: '30s' },
      ],
      gracefulStop: '30s',
    },
  },
  tags: { testid: 'threadloadtest' },
};

export default function () {
  const res = http.get(`${BASE_URL}/test-threadpool`, { timeout: '60s' });
  check(res, { 'status is 200': (r) => r.status === 200 });
}
