// Command-line options of the .NET reference workload: the flags of `starvation serve` that mean
// something for a real .NET service (the model's pool knobs do not: the runtime has its own).
using System;
using System.Collections.Generic;
using System.Net;

namespace Starvation.Sut
{
    sealed class Options
    {
        public IPEndPoint Listen = new IPEndPoint(IPAddress.Any, 5000);
        public int BlockMs = 2000;
        public int? MinThreads;
        public Uri Pushgateway;
        public string Service = "webserver";
        public string Instance;
        public TimeSpan PushInterval = TimeSpan.FromSeconds(1);
        public bool PushOnComplete;
        public bool ReusePort;
        public string SampleFile;
        public TimeSpan DrainTimeout = TimeSpan.FromSeconds(30);

        public const string Usage =
@"starvation-dotnet-sut: the paper's service on the real .NET runtime (run by `starvation`).
  --listen ADDR:PORT     address to listen on (default 0.0.0.0:5000)
  --block-ms N           how long /test-threadpool blocks a pool thread (default 2000)
  --min-threads N        ThreadPool.SetMinThreads for workers (default: the runtime's, = processors)
  --pushgateway URL      push the gauges to this Pushgateway (http only; env STARVATION_PUSHGATEWAY)
  --service NAME         the `service` label of the pushed gauges (default webserver)
  --instance NAME        the `instance` label (default hostname:port, plus -pid with --reuse-port)
  --push-interval D      push every D from a dedicated thread (default 1s; e.g. 500ms, 2s)
  --push-on-complete     also push when a request completes, on its pool thread (the original)
  --reuse-port           share --listen with other replicas (SO_REUSEPORT)
  --sample-file PATH     append one JSON line per push interval: gauges and runtime counters
  --drain-timeout D      on SIGTERM, how long in-flight requests may finish (default 30s)";

        public static Options Parse(string[] args)
        {
            var o = new Options();
            var env = Environment.GetEnvironmentVariable("STARVATION_PUSHGATEWAY");
            if (!string.IsNullOrEmpty(env)) o.Pushgateway = ParseGateway(env);
            for (int i = 0; i < args.Length; i++)
            {
                string flag = args[i], value = null;
                int eq = flag.IndexOf('=');
                if (flag.StartsWith("--") && eq > 0) { value = flag.Substring(eq + 1); flag = flag.Substring(0, eq); }
                Func<string> next = () =>
                {
                    if (value != null) return value;
                    if (i + 1 >= args.Length) throw new UsageError(flag + " needs a value");
                    return args[++i];
                };
                switch (flag)
                {
                    case "--listen": o.Listen = ParseEndPoint(next()); break;
                    case "--block-ms": o.BlockMs = ParseInt(flag, next(), 0, 600000); break;
                    case "--min-threads": o.MinThreads = ParseInt(flag, next(), 1, 32767); break;
                    case "--pushgateway": o.Pushgateway = ParseGateway(next()); break;
                    case "--service": o.Service = Label(flag, next()); break;
                    case "--instance": o.Instance = Label(flag, next()); break;
                    case "--push-interval": o.PushInterval = ParseDuration(flag, next()); break;
                    case "--push-on-complete": o.PushOnComplete = true; break;
                    case "--reuse-port": o.ReusePort = true; break;
                    case "--sample-file": o.SampleFile = next(); break;
                    case "--drain-timeout": o.DrainTimeout = ParseDuration(flag, next()); break;
                    case "--help": case "-h": throw new HelpRequested();
                    default: throw new UsageError("unknown flag " + flag + " (this is the .NET workload; the model's flags are `starvation serve --help`)");
                }
            }
            return o;
        }

        static IPEndPoint ParseEndPoint(string s)
        {
            int colon = s.LastIndexOf(':');
            IPAddress ip; int port;
            if (colon < 0 || !IPAddress.TryParse(s.Substring(0, colon).Trim('[', ']'), out ip)
                || !int.TryParse(s.Substring(colon + 1), out port) || port < 0 || port > 65535)
                throw new UsageError("--listen " + s + " is not ADDRESS:PORT (e.g. 127.0.0.1:5000)");
            return new IPEndPoint(ip, port);
        }

        static int ParseInt(string flag, string s, int min, int max)
        {
            int v;
            if (!int.TryParse(s, out v) || v < min || v > max)
                throw new UsageError(flag + " must be a whole number in " + min + ".." + max + " (got " + s + ")");
            return v;
        }

        // `500ms`, `1s`, `2m`: the subset of `starvation`'s durations a replica is given.
        static TimeSpan ParseDuration(string flag, string s)
        {
            string[] units = { "ms", "s", "m" };
            double[] scale = { 1, 1000, 60000 };
            for (int u = 0; u < units.Length; u++)
            {
                double v;
                if (s.EndsWith(units[u]) && double.TryParse(s.Substring(0, s.Length - units[u].Length),
                        System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out v) && v > 0)
                    return TimeSpan.FromMilliseconds(v * scale[u]);
            }
            throw new UsageError(flag + " " + s + " is not a positive duration like 500ms, 1s or 2m");
        }

        static Uri ParseGateway(string s)
        {
            Uri u;
            if (!Uri.TryCreate(s, UriKind.Absolute, out u) || u.Scheme != "http" || string.IsNullOrEmpty(u.Host))
                throw new UsageError("--pushgateway must be an http:// URL with a host, e.g. http://127.0.0.1:9091 (https is not supported by the .NET workload)");
            return u;
        }

        static string Label(string flag, string s)
        {
            foreach (char c in s)
                if (!(char.IsLetterOrDigit(c) && c < 128) && "._:-".IndexOf(c) < 0)
                    throw new UsageError(flag + " " + s + " may hold only letters, digits, '.', '_', ':' and '-'");
            if (s.Length == 0) throw new UsageError(flag + " must not be empty");
            return s;
        }
    }

    sealed class UsageError : Exception { public UsageError(string m) : base(m) { } }
    sealed class HelpRequested : Exception { }
}
