// Runs the SUT's Main in-process and samples PortableThreadPool internals by reflection from a
// dedicated (non-pool) thread. Research instrumentation only.
using System;
using System.IO;
using System.Reflection;
using System.Threading;

class Probe {
  const BindingFlags All = BindingFlags.Public|BindingFlags.NonPublic|BindingFlags.Static|BindingFlags.Instance;
  static int Main(string[] args) {
    string sut = args[0]; string outPath = args[1]; int periodMs = int.Parse(args[2]);
    string[] rest = new string[args.Length - 3]; Array.Copy(args, 3, rest, 0, rest.Length);
    Assembly core = typeof(object).Assembly;
    Type ptp = core.GetType("System.Threading.PortableThreadPool");
    Type hc = core.GetType("System.Threading.PortableThreadPool+HillClimbing");
    object inst = ptp.GetField("ThreadPoolInstance", All).GetValue(null);
    FieldInfo sepF = ptp.GetField("_separated", All);
    Type sepT = sepF.FieldType;
    FieldInfo gateF = sepT.GetField("gateThreadRunningState", All);
    FieldInfo countsF = sepT.GetField("counts", All), lastDeqF = sepT.GetField("lastDequeueTime", All), reqF = sepT.GetField("numRequestedWorkers", All);
    Type ctT = countsF.FieldType;
    PropertyInfo goalP = ctT.GetProperty("NumThreadsGoal", All), procP = ctT.GetProperty("NumProcessingWork", All), existP = ctT.GetProperty("NumExistingThreads", All);
    FieldInfo cpuF = ptp.GetField("_cpuUtilization", All), blockedF = ptp.GetField("_numBlockedThreads", All), addedF = ptp.GetField("_numThreadsAddedDueToBlocking", All), pendF = ptp.GetField("_pendingBlockingAdjustment", All), intervalF = ptp.GetField("_threadAdjustmentIntervalMs", All);
    PropertyInfo completedP = ptp.GetProperty("CompletedWorkItemCount", All);
    object hcInst = hc.GetField("ThreadPoolHillClimber", All).GetValue(null);
    FieldInfo logF = hc.GetField("_log", All), logStartF = hc.GetField("_logStart", All), logSizeF = hc.GetField("_logSize", All), ctrlF = hc.GetField("_currentControlSetting", All), totalF = hc.GetField("_totalSamples", All);
    Type leT = logF.FieldType.GetElementType();
    FieldInfo leTick = leT.GetField("tickCount", All), leState = leT.GetField("stateOrTransition", All), leNew = leT.GetField("newControlSetting", All);
    var w = TextWriter.Synchronized(new StreamWriter(outPath) { AutoFlush = true });
    int t0 = Environment.TickCount;
    w.WriteLine("{\"t0_tick\":" + t0 + "}");
    if (periodMs == 1) {
      var fine = new Thread(() => {
        string prev = "";
        while (true) {
          int now = Environment.TickCount;
          object sep = sepF.GetValue(inst); object c = countsF.GetValue(sep);
          string k = string.Format("ld={0} req={1} goal={2} proc={3} exist={4} gate={5}", (int)lastDeqF.GetValue(sep) - t0, reqF.GetValue(sep), goalP.GetValue(c), procP.GetValue(c), existP.GetValue(c), gateF.GetValue(sep));
          if (k != prev) { w.WriteLine("F " + (now - t0) + " " + k); prev = k; }
          Thread.Sleep(1);
        }
      }) { IsBackground = true, Name = "probe-fine" };
      fine.Start();
      periodMs = 50;
    }
    var th = new Thread(() => {
      int lastLogTick = int.MinValue; long seen = 0;
      while (true) {
        int now = Environment.TickCount;
        object sep = sepF.GetValue(inst); object c = countsF.GetValue(sep);
        int lastDeq = (int)lastDeqF.GetValue(sep);
        w.WriteLine(string.Format("S {0} goal={1} proc={2} exist={3} req={4} deqAge={5} cpu={6} blocked={7} addedBlk={8} pend={9} hcInt={10} done={11} ctrl={12:F2} hcSamples={13}",
          now - t0, goalP.GetValue(c), procP.GetValue(c), existP.GetValue(c), reqF.GetValue(sep), now - lastDeq, cpuF.GetValue(inst), blockedF.GetValue(inst), addedF.GetValue(inst), pendF.GetValue(inst), intervalF.GetValue(inst), completedP.GetValue(inst), ctrlF.GetValue(hcInst), totalF.GetValue(hcInst)));
        // hill-climbing transition log (circular, 200 entries): print entries not yet printed
        Array log = (Array)logF.GetValue(hcInst); int start = (int)logStartF.GetValue(hcInst), size = (int)logSizeF.GetValue(hcInst);
        for (int k = 0; k < size; k++) {
          object e = log.GetValue((start + k) % log.Length);
          int tick = (int)leTick.GetValue(e);
          if (tick - t0 < 0) continue;
          long key = ((long)(tick - t0) << 16) | (long)(k & 0xffff);
          if (tick > lastLogTick || (tick == lastLogTick && false)) {
            w.WriteLine(string.Format("H {0} {1} goal->{2}", tick - t0, leState.GetValue(e), leNew.GetValue(e)));
          }
        }
        for (int k = 0; k < size; k++) { object e = log.GetValue((start + k) % log.Length); int tick = (int)leTick.GetValue(e); if (tick > lastLogTick) lastLogTick = tick; }
        Thread.Sleep(periodMs);
      }
    }) { IsBackground = true, Name = "probe" };
    th.Start();
    Assembly a = Assembly.LoadFrom(sut);
    object r = a.EntryPoint.Invoke(null, new object[] { rest });
    return r is int ? (int)r : 0;
  }
}
