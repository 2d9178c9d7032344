// Kestrel's HTTP/1.1 connection loop (HttpProtocol.ProcessRequestsAsync): read the input pipe,
// parse one request, run the application inline in that continuation, write the response to
// the output pipe, and loop for the next request on the kept-alive connection.
using System;
using System.Collections.Generic;
using System.Text;

namespace Starvation.Sut
{
    sealed class Request
    {
        public string Method, Path;
        public bool KeepAlive;
    }

    sealed class Response
    {
        public int Status = 200;
        public string ContentType = "application/json";
        public string Body = "";
        public string Allow;
    }

    sealed class Http1Connection
    {
        // Kestrel's MaxRequestHeadersTotalSize (32 KiB).
        const int MaxHeaders = 32 * 1024;
        readonly SocketConnection _transport;
        readonly Func<Request, Response> _app;
        readonly Action _onReadable;

        public Http1Connection(SocketConnection transport, Func<Request, Response> app)
        {
            _transport = transport;
            _app = app;
            _onReadable = ProcessRequests;
        }

        // The connection's first work item (KestrelConnection.ExecuteAsync): start reading.
        public void Start() { ProcessRequests(); }

        // Runs on a pool thread: each time as the input pipe reader's continuation.
        void ProcessRequests()
        {
            while (true)
            {
                Request request = null;
                Response refused = null;
                bool completed;
                bool got = _transport.TryRead(input => TryParse(input, out request, out refused), _onReadable, out completed);
                if (!got)
                {
                    if (completed) _transport.CompleteOutput();
                    return; // the thread goes back to the pool until bytes arrive
                }
                if (refused != null)
                {
                    _transport.Write(Serialize(refused, false), true);
                    return;
                }
                var response = _app(request);
                _transport.Write(Serialize(response, request.KeepAlive), !request.KeepAlive);
                if (!request.KeepAlive) return;
            }
        }

        // One request off the front of `input` (GET-style: a body is skipped by Content-Length);
        // false while the head is incomplete.
        static bool TryParse(List<byte> input, out Request request, out Response refused)
        {
            request = null;
            refused = null;
            int end = -1;
            for (int i = 3; i < input.Count; i++)
                if (input[i] == '\n' && input[i - 1] == '\r' && input[i - 2] == '\n' && input[i - 3] == '\r') { end = i + 1; break; }
            if (end < 0)
            {
                if (input.Count <= MaxHeaders) return false;
                refused = new Response { Status = 431, Body = "{\"error\":\"request headers too large\"}" };
                return true;
            }
            string head = Encoding.ASCII.GetString(input.GetRange(0, end).ToArray());
            string[] lines = head.Split(new[] { "\r\n" }, StringSplitOptions.None);
            string[] start = lines[0].Split(' ');
            if (start.Length != 3 || !start[2].StartsWith("HTTP/1."))
            {
                refused = new Response { Status = 400, Body = "{\"error\":\"malformed request line\"}" };
                return true;
            }
            bool http11 = start[2] == "HTTP/1.1";
            string connection = null;
            long length = 0;
            for (int i = 1; i < lines.Length; i++)
            {
                int colon = lines[i].IndexOf(':');
                if (colon <= 0) continue;
                string name = lines[i].Substring(0, colon).Trim().ToLowerInvariant();
                string value = lines[i].Substring(colon + 1).Trim();
                if (name == "connection") connection = value.ToLowerInvariant();
                else if (name == "content-length" && !long.TryParse(value, out length)) length = -1;
                else if (name == "transfer-encoding")
                {
                    refused = new Response { Status = 501, Body = "{\"error\":\"chunked request bodies are not supported\"}" };
                    return true;
                }
            }
            if (length < 0 || length > SocketConnection.MaxInput)
            {
                refused = new Response { Status = 413, Body = "{\"error\":\"bad or too large Content-Length\"}" };
                return true;
            }
            if (input.Count < end + length) return false;
            input.RemoveRange(0, end + (int)length);
            string target = start[1];
            int q = target.IndexOf('?');
            request = new Request
            {
                Method = start[0],
                Path = q < 0 ? target : target.Substring(0, q),
                KeepAlive = http11 ? connection != "close" : connection == "keep-alive",
            };
            return true;
        }

        static byte[] Serialize(Response r, bool keepAlive)
        {
            var body = Encoding.UTF8.GetBytes(r.Body);
            var head = new StringBuilder();
            head.Append("HTTP/1.1 ").Append(r.Status).Append(' ').Append(Reason(r.Status)).Append("\r\n");
            head.Append("Content-Type: ").Append(r.ContentType).Append("\r\n");
            head.Append("Content-Length: ").Append(body.Length).Append("\r\n");
            head.Append("Date: ").Append(DateTime.UtcNow.ToString("r")).Append("\r\n");
            head.Append("Server: starvation-dotnet\r\n");
            if (r.Allow != null) head.Append("Allow: ").Append(r.Allow).Append("\r\n");
            if (!keepAlive) head.Append("Connection: close\r\n");
            head.Append("\r\n");
            var h = Encoding.ASCII.GetBytes(head.ToString());
            var all = new byte[h.Length + body.Length];
            Buffer.BlockCopy(h, 0, all, 0, h.Length);
            Buffer.BlockCopy(body, 0, all, h.Length, body.Length);
            return all;
        }

        static string Reason(int status)
        {
            switch (status)
            {
                case 200: return "OK";
                case 400: return "Bad Request";
                case 404: return "Not Found";
                case 405: return "Method Not Allowed";
                case 413: return "Payload Too Large";
                case 431: return "Request Header Fields Too Large";
                case 501: return "Not Implemented";
                case 503: return "Service Unavailable";
                default: return "Status";
            }
        }
    }
}
