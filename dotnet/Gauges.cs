// The original service's nine gauges, computed as it did (ThreadPool.GetAvailableThreads /
// GetMaxThreads, PendingWorkItemCount, the process's threads, its CPU usage), plus the same
// facts under the names the .NET ecosystem exports (the System.Runtime meter of .NET 9+ and
// OpenTelemetry's runtime instrumentation for .NET 8), and the runtime's own counters.
using System;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Threading;

namespace Starvation.Sut
{
    sealed class Sample
    {
        public double UnixSeconds;
        public int MaxWorkers, AvailableWorkers, MaxIo, AvailableIo;
        public long Queue, Completed;
        public int PoolThreads, ProcessThreads;
        public double CpuPercent;
        public int InFlight;
        public int Busy { get { return MaxWorkers - AvailableWorkers; } }
        public int BusyIo { get { return MaxIo - AvailableIo; } }
    }

    sealed class Gauges
    {
        // APIs newer than the compiler's profile, read by reflection from the running runtime.
        static readonly Func<long> PendingWorkItemCount = Getter<long>("PendingWorkItemCount");
        static readonly Func<int> ThreadCount = Getter<int>("ThreadCount");
        static readonly Func<long> CompletedWorkItemCount = Getter<long>("CompletedWorkItemCount");

        readonly object _cpuGate = new object();
        TimeSpan _lastCpu;
        DateTime _lastWall;
        double _cpuPercent;
        public Func<int> InFlight = () => 0;

        public Gauges()
        {
            _lastCpu = Process.GetCurrentProcess().TotalProcessorTime;
            _lastWall = DateTime.UtcNow;
        }

        static Func<T> Getter<T>(string name)
        {
            var p = typeof(ThreadPool).GetProperty(name, BindingFlags.Public | BindingFlags.Static);
            if (p == null) throw new InvalidOperationException("ThreadPool." + name + " is missing: this needs .NET Core 3.0 or later");
            return (Func<T>)Delegate.CreateDelegate(typeof(Func<T>), p.GetGetMethod());
        }

        // CPU usage as .NET's cpu-usage counter: process CPU time over wall time, in percent of
        // all processors, since the previous sample (the sampler thread calls this each interval).
        public void SampleCpu()
        {
            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            var now = DateTime.UtcNow;
            lock (_cpuGate)
            {
                double wall = (now - _lastWall).TotalSeconds;
                if (wall > 0)
                    _cpuPercent = Math.Max(0, (cpu - _lastCpu).TotalSeconds / wall / Environment.ProcessorCount * 100);
                _lastCpu = cpu;
                _lastWall = now;
            }
        }

        public Sample Read()
        {
            var s = new Sample();
            s.UnixSeconds = (DateTime.UtcNow - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalSeconds;
            ThreadPool.GetMaxThreads(out s.MaxWorkers, out s.MaxIo);
            ThreadPool.GetAvailableThreads(out s.AvailableWorkers, out s.AvailableIo);
            s.Queue = PendingWorkItemCount();
            s.PoolThreads = ThreadCount();
            s.Completed = CompletedWorkItemCount();
            using (var p = Process.GetCurrentProcess()) s.ProcessThreads = p.Threads.Count;
            lock (_cpuGate) s.CpuPercent = _cpuPercent;
            s.InFlight = InFlight();
            return s;
        }

        // Prometheus text format 0.0.4 (what the Pushgateway parses).
        public static string Text(Sample s)
        {
            var b = new StringBuilder();
            Gauge(b, "max_worker_threads", "Maximum worker threads of the pool (ThreadPool.GetMaxThreads)", s.MaxWorkers);
            Gauge(b, "available_worker_threads", "Worker threads available: max minus busy (ThreadPool.GetAvailableThreads)", s.AvailableWorkers);
            Gauge(b, "busy_worker_threads", "Worker threads processing work", s.Busy);
            Gauge(b, "max_completion_port_threads", "Maximum I/O completion port threads", s.MaxIo);
            Gauge(b, "available_completion_port_threads", "I/O completion port threads available", s.AvailableIo);
            Gauge(b, "busy_completion_port_threads", "I/O completion port threads busy", s.BusyIo);
            Gauge(b, "system_runtime_threadpool_queue_length", "Work items queued on the pool and not yet started (ThreadPool.PendingWorkItemCount)", s.Queue);
            Gauge(b, "system_runtime_cpu_usage", "Process CPU usage in percent of all processors (.NET cpu-usage)", s.CpuPercent);
            Gauge(b, "process_number_of_threads", "OS threads of the process", s.ProcessThreads);
            // The .NET ecosystem's names for the same facts.
            Gauge(b, "dotnet_thread_pool_queue_length", "Work items queued on the thread pool (System.Runtime meter, .NET 9+)", s.Queue);
            Gauge(b, "dotnet_thread_pool_thread_count", "Thread-pool threads that exist (System.Runtime meter, .NET 9+)", s.PoolThreads);
            Counter(b, "dotnet_thread_pool_work_item_count_total", "Work items the thread pool completed (System.Runtime meter, .NET 9+)", s.Completed);
            Gauge(b, "process_runtime_dotnet_thread_pool_queue_length", "Work items queued on the thread pool (OpenTelemetry runtime instrumentation, .NET 8)", s.Queue);
            Gauge(b, "process_runtime_dotnet_thread_pool_threads_count", "Thread-pool threads that exist (OpenTelemetry runtime instrumentation, .NET 8)", s.PoolThreads);
            Counter(b, "process_runtime_dotnet_thread_pool_completed_items_count_total", "Work items the thread pool completed (OpenTelemetry runtime instrumentation, .NET 8)", s.Completed);
            return b.ToString();
        }

        // One line of the --sample-file: the gauges and the runtime's own counters, read at once.
        public static string Json(Sample s)
        {
            var c = CultureInfo.InvariantCulture;
            return string.Format(c,
                "{{\"t\":{0:F3},\"busy\":{1},\"available\":{2},\"max\":{3},\"queue\":{4},\"pool_threads\":{5},\"completed\":{6},\"process_threads\":{7},\"cpu\":{8:F2},\"in_flight\":{9}}}",
                s.UnixSeconds, s.Busy, s.AvailableWorkers, s.MaxWorkers, s.Queue, s.PoolThreads, s.Completed, s.ProcessThreads, s.CpuPercent, s.InFlight);
        }

        static void Gauge(StringBuilder b, string name, string help, double value)
        {
            b.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            b.Append("# TYPE ").Append(name).Append(" gauge\n");
            b.Append(name).Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }

        static void Counter(StringBuilder b, string name, string help, double value)
        {
            string family = name.Substring(0, name.Length - "_total".Length);
            b.Append("# HELP ").Append(family).Append(' ').Append(help).Append('\n');
            b.Append("# TYPE ").Append(family).Append(" counter\n");
            b.Append(name).Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }
    }
}
