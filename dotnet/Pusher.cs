// Pushes the gauges to the Pushgateway from a dedicated thread with blocking sockets: nothing
// here waits for the thread pool, so a starved pool cannot silence its own alarm. The group is
// the one `starvation serve` replicas use: job=webserver, instance, service.
using System;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;

namespace Starvation.Sut
{
    sealed class Pusher
    {
        readonly Uri _gateway;
        readonly string _path;
        readonly string _auth;
        readonly object _oneAtATime = new object();
        int _failures;

        readonly TimeSpan _timeout;

        public Pusher(Uri gateway, string instance, string service, TimeSpan interval)
        {
            // As `starvation serve`'s pusher: the push interval, at least 2 s.
            _timeout = interval > TimeSpan.FromSeconds(2) ? interval : TimeSpan.FromSeconds(2);
            _gateway = gateway;
            _path = gateway.AbsolutePath.TrimEnd('/') + "/metrics/job/webserver/instance/" + instance + "/service/" + service;
            if (!string.IsNullOrEmpty(gateway.UserInfo))
                _auth = Convert.ToBase64String(Encoding.UTF8.GetBytes(Uri.UnescapeDataString(gateway.UserInfo)));
        }

        // The group's URL without credentials, for logs.
        public string Shown { get { return _gateway.Scheme + "://" + _gateway.Host + ":" + _gateway.Port + _path; } }

        public void Push(string body)
        {
            try { Send("PUT", body); Interlocked.Exchange(ref _failures, 0); }
            catch (Exception e)
            {
                // The first failure of a streak is logged; the rest would flood the log.
                if (Interlocked.Increment(ref _failures) == 1)
                    Console.Error.WriteLine(DateTime.UtcNow.ToString("o") + " warning: Pushgateway push to " + Shown + " failed: " + e.Message);
            }
        }

        public void Delete()
        {
            try { Send("DELETE", null); Console.Error.WriteLine("deleted Pushgateway group " + Shown); }
            catch (Exception e) { Console.Error.WriteLine("warning: could not delete Pushgateway group " + Shown + ": " + e.Message); }
        }

        Socket _conn; // kept alive between pushes, as `serve`'s HTTP client does

        void Send(string method, string body)
        {
            lock (_oneAtATime)
            {
                byte[] content = body == null ? new byte[0] : Encoding.UTF8.GetBytes(body);
                var head = new StringBuilder();
                head.Append(method).Append(' ').Append(_path).Append(" HTTP/1.1\r\n");
                head.Append("Host: ").Append(_gateway.Authority).Append("\r\n");
                if (_auth != null) head.Append("Authorization: Basic ").Append(_auth).Append("\r\n");
                if (body != null) head.Append("Content-Type: text/plain; version=0.0.4\r\n");
                head.Append("Content-Length: ").Append(content.Length).Append("\r\n\r\n");
                var h = Encoding.ASCII.GetBytes(head.ToString());
                var request = new byte[h.Length + content.Length];
                Buffer.BlockCopy(h, 0, request, 0, h.Length);
                Buffer.BlockCopy(content, 0, request, h.Length, content.Length);
                // A kept-alive connection the server has closed fails at once: retry once on a
                // new one.
                bool reused = _conn != null;
                try { Exchange(request); }
                catch (Exception) when (reused) { Exchange(request); }
            }
        }

        // One request and its response on the kept-alive connection (opened if needed); any
        // failure closes it.
        void Exchange(byte[] request)
        {
            try
            {
                if (_conn == null) _conn = Connect(_timeout);
                _conn.Send(request); // one write: no Nagle wait between head and body
                var status = ReadResponse(_conn);
                if (!status.Contains(" 200 ") && !status.Contains(" 202 "))
                    throw new IOException("HTTP " + status);
            }
            catch (Exception)
            {
                if (_conn != null) { _conn.Close(); _conn = null; }
                throw;
            }
        }

        // A blocking connect bounded by `timeout` (Socket.Poll, no async, no pool).
        Socket Connect(TimeSpan timeout)
        {
            Exception last = null;
            foreach (var ip in Dns.GetHostAddresses(_gateway.DnsSafeHost))
            {
                var s = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                try
                {
                    s.Blocking = false;
                    try { s.Connect(new IPEndPoint(ip, _gateway.Port)); }
                    catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock || e.SocketErrorCode == SocketError.InProgress) { }
                    if (!s.Poll((int)(timeout.TotalMilliseconds * 1000), SelectMode.SelectWrite) || !s.Connected)
                        throw new IOException("cannot connect to " + ip + ":" + _gateway.Port);
                    s.Blocking = true;
                    s.ReceiveTimeout = s.SendTimeout = (int)timeout.TotalMilliseconds;
                    return s;
                }
                catch (Exception e) { last = e; s.Close(); }
            }
            throw last ?? new IOException("no address for " + _gateway.Host);
        }

        // The status line; the headers and a Content-Length body are read and dropped, so the
        // connection is ready for the next request. A response without a length ends the
        // connection.
        string ReadResponse(Socket s)
        {
            string status = ReadLine(s);
            long length = -1;
            string line;
            while ((line = ReadLine(s)).Length > 0)
            {
                int colon = line.IndexOf(':');
                if (colon > 0 && line.Substring(0, colon).Trim().ToLowerInvariant() == "content-length")
                    long.TryParse(line.Substring(colon + 1).Trim(), out length);
            }
            if (length < 0) { _conn.Close(); _conn = null; return status; }
            var sink = new byte[4096];
            while (length > 0)
            {
                int n = s.Receive(sink, 0, (int)Math.Min(sink.Length, length), SocketFlags.None);
                if (n <= 0) throw new IOException("the Pushgateway closed the connection mid-response");
                length -= n;
            }
            return status;
        }

        static string ReadLine(Socket s)
        {
            var line = new StringBuilder();
            var one = new byte[1];
            while (true)
            {
                if (s.Receive(one) != 1) throw new IOException("the Pushgateway closed the connection");
                if (one[0] == '\n') break;
                if (line.Length > 8192) throw new IOException("the Pushgateway's response line is too long");
                line.Append((char)one[0]);
            }
            return line.ToString().TrimEnd('\r');
        }
    }
}
