"""Writes expected.json: what mitmproxy 11.0.2 reads from each fixture (run with its venv's python)."""
import glob, json, os
from mitmproxy.io import io

here = os.path.dirname(os.path.abspath(__file__))
out = {}
for path in sorted(glob.glob(os.path.join(here, "*.mitm"))):
    name = os.path.basename(path)
    try:
        with open(path, "rb") as fo:
            flows = list(io.FlowReader(fo).stream())
    except Exception as e:
        out[name] = {"error": str(e)}
        continue
    summary = []
    for f in flows:
        item = {"type": f.type, "id": f.id}
        if f.type == "http":
            req, resp = f.request, f.response
            item.update(method=req.method, url=req.url, request_headers=[list(h) for h in req.headers.items(multi=True)],
                        request_body=len(req.raw_content or b""), request_start=req.timestamp_start,
                        status=resp.status_code if resp else None,
                        response_headers=[list(h) for h in resp.headers.items(multi=True)] if resp else None,
                        response_body=len(resp.raw_content or b"") if resp else None,
                        error=f.error.msg if f.error else None, marked=f.marked,
                        websocket_messages=len(f.websocket.messages) if f.websocket else None)
            if f.websocket:
                ws = f.websocket
                item.update(websocket_close_code=ws.close_code, websocket_closed_by_client=ws.closed_by_client,
                            websocket_message_kinds=[[int(m.type), m.from_client, len(m.content)] for m in ws.messages])
        elif f.type == "tcp":
            item.update(tcp_messages=[[m.from_client, len(m.content), m.timestamp] for m in f.messages],
                        server_address=list(f.server_conn.address) if f.server_conn.address else None,
                        client_peername=list(f.client_conn.peername) if f.client_conn.peername else None,
                        error=f.error.msg if f.error else None, marked=f.marked)
        summary.append(item)
    out[name] = {"flows": summary}
with open(os.path.join(here, "expected.json"), "w") as fo:
    json.dump(out, fo, indent=1, sort_keys=True)
