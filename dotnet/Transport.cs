// Kestrel's Sockets transport, rebuilt on raw sockets (ASP.NET Core is not installable here).
// What matters is where each step runs, i.e. the thread-pool work items per request; see
// docs/dotnet.md for the side-by-side with Kestrel's source:
//   - socket completions arrive through .NET's own socket engine (SocketAsyncEventArgs), and
//     the receive and send loops continue inline on the engine's work item, as Kestrel's
//     SocketReceiver/SocketSender do (their scheduler is PipeScheduler.Inline);
//   - bytes received wake the HTTP/1.1 loop as a global-queue work item (the input pipe's
//     reader scheduler, PipeScheduler.ThreadPool), which runs the request inline and writes
//     the response;
//   - the response wakes the connection's send loop on one of min(ProcessorCount, 16) IOQueues
//     (the output pipe's reader scheduler), each at most one global-queue work item at a time.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Net.Sockets;
using System.Threading;

namespace Starvation.Sut
{
    // Kestrel's IOQueue: a PipeScheduler that runs scheduled callbacks in order on the thread
    // pool, with at most one work item queued or running at a time.
    sealed class IOQueue
    {
        readonly ConcurrentQueue<KeyValuePair<Action<object>, object>> _work =
            new ConcurrentQueue<KeyValuePair<Action<object>, object>>();
        int _doingWork;
        static readonly WaitCallback ExecuteCallback = s => ((IOQueue)s).Execute();

        public void Schedule(Action<object> action, object state)
        {
            _work.Enqueue(new KeyValuePair<Action<object>, object>(action, state));
            // Queue ourselves only if no work item of ours is queued or running.
            if (Interlocked.CompareExchange(ref _doingWork, 1, 0) == 0)
                ThreadPool.UnsafeQueueUserWorkItem(ExecuteCallback, this); // global queue
        }

        void Execute()
        {
            while (true)
            {
                KeyValuePair<Action<object>, object> item;
                while (_work.TryDequeue(out item)) item.Key(item.Value);
                // Publish "not working" before the last look, so a concurrent Schedule either
                // sees 0 and queues us, or we see its item.
                Volatile.Write(ref _doingWork, 0);
                if (_work.IsEmpty || Interlocked.Exchange(ref _doingWork, 1) == 1) return;
            }
        }
    }

    // Kestrel's SocketConnectionListener + ConnectionDispatcher: the accept loop. Accepts complete
    // through the socket engine; each accepted connection starts its receive loop and is handed
    // to the pool as one work item (ConnectionDispatcher: UnsafeQueueUserWorkItem(connection)).
    sealed class Listener
    {
        readonly Socket _socket;
        readonly IOQueue[] _queues;
        readonly Func<SocketConnection, Http1Connection> _http;
        readonly SocketAsyncEventArgs _accept = new SocketAsyncEventArgs();
        int _next;
        volatile bool _stopped;

        public Listener(Socket socket, Func<SocketConnection, Http1Connection> http)
        {
            _socket = socket;
            _http = http;
            // SocketTransportOptions.IOQueueCount = Math.Min(Environment.ProcessorCount, 16).
            _queues = new IOQueue[Math.Min(Environment.ProcessorCount, 16)];
            for (int i = 0; i < _queues.Length; i++) _queues[i] = new IOQueue();
            _accept.Completed += (s, e) => { if (Accepted(e)) AcceptLoop(); };
        }

        public void Start() { AcceptLoop(); }

        public void Stop()
        {
            _stopped = true;
            try { _socket.Close(); } catch (Exception) { }
        }

        void AcceptLoop()
        {
            while (!_stopped)
            {
                _accept.AcceptSocket = null;
                bool pending;
                try { pending = _socket.AcceptAsync(_accept); }
                catch (ObjectDisposedException) { return; }
                if (pending) return; // resumes in _accept.Completed, on the socket engine's work item
                if (!Accepted(_accept)) return;
            }
        }

        bool Accepted(SocketAsyncEventArgs e)
        {
            if (_stopped) { if (e.AcceptSocket != null) e.AcceptSocket.Close(); return false; }
            if (e.SocketError != SocketError.Success)
                return e.SocketError != SocketError.OperationAborted; // transient errors: keep accepting
            var socket = e.AcceptSocket;
            socket.NoDelay = true; // Kestrel's default
            // Round-robin over the IOQueues, as SocketConnectionContextFactory does.
            var queue = _queues[(Interlocked.Increment(ref _next) & int.MaxValue) % _queues.Length];
            var connection = new SocketConnection(socket, queue);
            var http = _http(connection);
            connection.Start();
            ThreadPool.UnsafeQueueUserWorkItem(s => ((Http1Connection)s).Start(), http);
            return true;
        }
    }

    // Kestrel's SocketConnection: a receive loop (zero-byte read, then read, then flush the input
    // pipe) and a send loop (read the output pipe, send). A socket operation that completes
    // later continues inline where the socket engine completes it; the send loop is woken by
    // new output on the connection's IOQueue. The pipes are two small buffers here.
    sealed class SocketConnection
    {
        public const int MaxInput = 64 * 1024;
        readonly Socket _socket;
        readonly IOQueue _io;
        readonly SocketAsyncEventArgs _receive = new SocketAsyncEventArgs();
        readonly SocketAsyncEventArgs _send = new SocketAsyncEventArgs();
        readonly byte[] _buffer = new byte[4096];
        static readonly byte[] Empty = new byte[0];

        // Input pipe.
        readonly object _inputGate = new object();
        readonly List<byte> _input = new List<byte>();
        bool _inputCompleted;
        Action _reader; // the HTTP loop waiting for bytes (Input.ReadAsync pending)

        // Output pipe.
        readonly object _outputGate = new object();
        readonly Queue<byte[]> _output = new Queue<byte[]>();
        bool _sendLoopWaiting = true, _outputCompleted, _closed;

        public SocketConnection(Socket socket, IOQueue io)
        {
            _socket = socket;
            _io = io;
            // SocketReceiver and SocketSender run their continuations inline (PipeScheduler.Inline).
            _receive.Completed += (s, e) => OnReceived();
            _send.Completed += (s, e) => OnSent();
        }

        public void Start() { ReceiveLoop(); }

        // --- receive loop (DoReceive) ---
        bool _waitingForData = true; // zero-byte read in flight (WaitForDataBeforeAllocatingBuffer)

        void ReceiveLoop()
        {
            while (true)
            {
                if (_waitingForData) _receive.SetBuffer(Empty, 0, 0);
                else _receive.SetBuffer(_buffer, 0, _buffer.Length);
                bool pending;
                try { pending = _socket.ReceiveAsync(_receive); }
                catch (ObjectDisposedException) { CompleteInput(); return; }
                if (pending) return; // continues in OnReceived, on the socket engine's work item
                if (!Received()) return;
            }
        }

        void OnReceived() { if (Received()) ReceiveLoop(); }

        // One receive finished; false when the loop ends.
        bool Received()
        {
            if (_receive.SocketError != SocketError.Success) { CompleteInput(); return false; }
            if (_waitingForData) { _waitingForData = false; return true; }
            int n = _receive.BytesTransferred;
            if (n == 0) { CompleteInput(); return false; } // FIN
            _waitingForData = true;
            Action reader = null;
            bool overflow;
            lock (_inputGate)
            {
                for (int i = 0; i < n; i++) _input.Add(_buffer[i]);
                overflow = _input.Count > MaxInput;
                reader = _reader;
                _reader = null;
            }
            // FlushAsync: the waiting reader continues on PipeScheduler.ThreadPool.
            if (reader != null) QueueReader(reader);
            return !overflow;
        }

        void CompleteInput()
        {
            Action reader;
            lock (_inputGate) { _inputCompleted = true; reader = _reader; _reader = null; }
            if (reader != null) QueueReader(reader);
        }

        static void QueueReader(Action reader)
        {
            ThreadPool.UnsafeQueueUserWorkItem(s => ((Action)s)(), reader); // global queue
        }

        // Input.ReadAsync for the HTTP loop: the bytes so far, or false after registering
        // `reader` to be queued when more arrive. `completed` says no more will.
        public bool TryRead(Func<List<byte>, bool> consume, Action reader, out bool completed)
        {
            lock (_inputGate)
            {
                completed = _inputCompleted;
                if (_input.Count > 0 && consume(_input)) return true;
                if (!completed) _reader = reader;
                return false;
            }
        }

        // --- send loop (DoSend) ---
        // Output.FlushAsync: the send loop, waiting on the output pipe, continues on our IOQueue.
        public void Write(byte[] data, bool last)
        {
            bool wake;
            lock (_outputGate)
            {
                if (_outputCompleted) return;
                _output.Enqueue(data);
                if (last) _outputCompleted = true;
                wake = _sendLoopWaiting;
                _sendLoopWaiting = false;
            }
            if (wake) _io.Schedule(st => ((SocketConnection)st).SendLoop(), this);
        }

        // The HTTP loop ended (client closed, error): no more output.
        public void CompleteOutput()
        {
            bool wake;
            lock (_outputGate)
            {
                _outputCompleted = true;
                wake = _sendLoopWaiting;
                _sendLoopWaiting = false;
            }
            if (wake) _io.Schedule(st => ((SocketConnection)st).SendLoop(), this);
        }

        void SendLoop()
        {
            while (true)
            {
                byte[] next = null;
                lock (_outputGate)
                {
                    if (_output.Count > 0) next = _output.Dequeue();
                    else if (_outputCompleted) { Close(); return; }
                    else { _sendLoopWaiting = true; return; }
                }
                _send.SetBuffer(next, 0, next.Length);
                bool pending;
                try { pending = _socket.SendAsync(_send); }
                catch (ObjectDisposedException) { return; }
                if (pending) return; // continues in OnSent, on the socket engine's work item
                if (!Sent()) return;
            }
        }

        void OnSent() { if (Sent()) SendLoop(); }

        bool Sent()
        {
            if (_send.SocketError == SocketError.Success && _send.BytesTransferred == _send.Count) return true;
            if (_send.SocketError == SocketError.Success)
            {
                // A partial send: send the rest first.
                var rest = new byte[_send.Count - _send.BytesTransferred];
                Array.Copy(_send.Buffer, _send.Offset + _send.BytesTransferred, rest, 0, rest.Length);
                lock (_outputGate)
                {
                    var queued = _output.ToArray();
                    _output.Clear();
                    _output.Enqueue(rest);
                    foreach (var b in queued) _output.Enqueue(b);
                }
                return true;
            }
            Close();
            return false;
        }

        void Close()
        {
            lock (_outputGate) { if (_closed) return; _closed = true; }
            try { _socket.Shutdown(SocketShutdown.Both); } catch (Exception) { }
            _socket.Close();
        }
    }
}
