// The paper's service under test on the real .NET runtime, for `starvation experiment
// --workload dotnet`: GET /test-threadpool blocks a pool thread the original's way
// (Task.Run(() => Thread.Sleep(block)).Wait()), /metrics and /healthz, the original's gauges
// pushed from a dedicated thread. No document store: no database driver can be installed here.
using System;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;

namespace Starvation.Sut
{
    static class Program
    {
        static int _inFlight;
        static long _requests;

        static int Main(string[] args)
        {
            Options o;
            try { o = Options.Parse(args); }
            catch (HelpRequested) { Console.WriteLine(Options.Usage); return 0; }
            catch (UsageError e) { Console.Error.WriteLine("error: " + e.Message + "\n\n" + Options.Usage); return 2; }

            if (o.MinThreads.HasValue)
            {
                int w, io;
                ThreadPool.GetMinThreads(out w, out io);
                if (!ThreadPool.SetMinThreads(o.MinThreads.Value, io))
                {
                    Console.Error.WriteLine("error: --min-threads " + o.MinThreads + " refused by ThreadPool.SetMinThreads");
                    return 2;
                }
            }

            var listenSocket = new Socket(o.Listen.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            // On Linux .NET sets SO_REUSEPORT together with SO_REUSEADDR (SystemNative_SetSockOpt),
            // so replicas sharing --listen get connections spread by the kernel.
            if (o.ReusePort) listenSocket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            try
            {
                listenSocket.Bind(o.Listen);
                listenSocket.Listen(1024);
            }
            catch (SocketException e)
            {
                Console.Error.WriteLine("error: --listen " + o.Listen + ": cannot bind (" + e.Message + "); is another replica on that port? pick another port, or pass --reuse-port to every replica sharing it");
                return 1;
            }
            var bound = (IPEndPoint)listenSocket.LocalEndPoint;
            string instance = o.Instance ?? Dns.GetHostName() + ":" + bound.Port + (o.ReusePort ? "-" + System.Diagnostics.Process.GetCurrentProcess().Id : "");

            var gauges = new Gauges();
            gauges.InFlight = () => Volatile.Read(ref _inFlight);
            var pusher = o.Pushgateway == null ? null : new Pusher(o.Pushgateway, instance, o.Service, o.PushInterval);
            var app = new App(o, instance, gauges, pusher);
            var listener = new Listener(listenSocket, c => new Http1Connection(c, app.Handle));

            var stop = new ManualResetEventSlim();
            var drained = new ManualResetEventSlim();
            Console.CancelKeyPress += (s, e) => { e.Cancel = true; stop.Set(); };
            // SIGTERM raises ProcessExit: drain before the runtime exits.
            AppDomain.CurrentDomain.ProcessExit += (s, e) => { stop.Set(); drained.Wait(o.DrainTimeout + TimeSpan.FromSeconds(15)); };

            var sampler = new Thread(() => Sample(o, gauges, pusher, stop)) { IsBackground = true, Name = "gauge sampler" };
            sampler.Start();
            listener.Start();
            Console.Error.WriteLine("serving on " + bound + " as instance " + instance + " (.NET " + Environment.Version +
                ", " + Environment.ProcessorCount + " processors, store: none)");
            if (pusher != null) Console.Error.WriteLine("pushing gauges to " + pusher.Shown + " every " + o.PushInterval.TotalMilliseconds + " ms");
            // Scripts and the orchestrator read the bound address from this line.
            Console.WriteLine("listening on http://" + bound);
            Console.Out.Flush();

            stop.Wait();
            listener.Stop();
            var deadline = DateTime.UtcNow + o.DrainTimeout;
            while (Volatile.Read(ref _inFlight) > 0 && DateTime.UtcNow < deadline) Thread.Sleep(20);
            int cut = Volatile.Read(ref _inFlight);
            sampler.Join(TimeSpan.FromSeconds(5));
            if (pusher != null) pusher.Delete();
            if (cut > 0) Console.Error.WriteLine("error: the drain timeout (" + o.DrainTimeout + ") cut " + cut + " requests in flight; raise --drain-timeout to let them finish");
            Environment.ExitCode = cut > 0 ? 1 : 0;
            drained.Set();
            return Environment.ExitCode;
        }

        // The dedicated sampler: every --push-interval, read the gauges (and the CPU since the last
        // sample), push them, and append them to --sample-file.
        static void Sample(Options o, Gauges gauges, Pusher pusher, ManualResetEventSlim stop)
        {
            StreamWriter samples = null;
            if (o.SampleFile != null)
                samples = new StreamWriter(new FileStream(o.SampleFile, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = true };
            var next = DateTime.UtcNow;
            while (!stop.IsSet)
            {
                gauges.SampleCpu();
                var s = gauges.Read();
                if (pusher != null) pusher.Push(Gauges.Text(s));
                if (samples != null) samples.WriteLine(Gauges.Json(s));
                next += o.PushInterval;
                var wait = next - DateTime.UtcNow;
                if (wait < TimeSpan.Zero) { next = DateTime.UtcNow; wait = TimeSpan.Zero; }
                stop.Wait(wait);
            }
            if (samples != null) samples.Dispose();
        }

        sealed class App
        {
            readonly Options _o;
            readonly string _instance;
            readonly Gauges _gauges;
            readonly Pusher _pusher;

            public App(Options o, string instance, Gauges gauges, Pusher pusher)
            {
                _o = o; _instance = instance; _gauges = gauges; _pusher = pusher;
            }

            public Response Handle(Request r)
            {
                Interlocked.Increment(ref _inFlight);
                try { return Route(r); }
                finally { Interlocked.Decrement(ref _inFlight); Interlocked.Increment(ref _requests); }
            }

            Response Route(Request r)
            {
                if (r.Path != "/test-threadpool" && r.Path != "/metrics" && r.Path != "/healthz")
                    return new Response { Status = 404, Body = "{\"error\":\"no such route\"}" };
                if (r.Method != "GET")
                    return new Response { Status = 405, Allow = "GET", Body = "{\"error\":\"only GET\"}" };
                if (r.Path == "/metrics")
                    return new Response { ContentType = "text/plain; version=0.0.4; charset=utf-8", Body = Gauges.Text(_gauges.Read()) };
                if (r.Path == "/healthz")
                    return new Response { Body = "{\"status\":\"ok\",\"instance\":\"" + _instance + "\",\"store\":\"none\",\"runtime\":\"" + Environment.Version + "\"}" };
                // The original endpoint: sync over async on the pool.
                Task.Run(() => Thread.Sleep(_o.BlockMs)).Wait();
                if (_o.PushOnComplete && _pusher != null) _pusher.Push(Gauges.Text(_gauges.Read()));
                return new Response
                {
                    Body = "{\"status\":\"ok\",\"instance\":\"" + _instance + "\",\"timestamp\":\"" +
                        DateTime.UtcNow.ToString("o") + "\",\"blocked_ms\":" + _o.BlockMs + "}",
                };
            }
        }
    }
}
