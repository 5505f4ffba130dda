"""A small keep-alive HTTP/1.1 replica for the benches measured from outside
(gray.py, hedge.py): a threaded server, and the reading of one request."""
import socketserver


class Replica(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 256


def read_request(rfile):
    """The next request on a connection: (method, headers by lower-case name,
    body), or None once the client closed it."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = rfile.readline()
        if not line:
            return None
        head += line
    lines = head.split(b"\r\n")
    method = lines[0].split(b" ")[0].decode()
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower().decode()] = value.strip().decode()
    body = rfile.read(int(headers.get("content-length", "0")))
    return method, headers, body
