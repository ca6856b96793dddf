"""GenAI spans over OTLP/HTTP: a real OTLP receiver on 127.0.0.1 decodes what capture's writer sends."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tunewright.serve.capture import Capture
from tunewright.serve.config import CaptureConfig

EMAIL = "dana.smith@example.com"


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP traces endpoint keeping every span it is sent, and the raw bodies."""

    def __init__(self) -> None:
        self.spans, self.bodies, self.paths = [], [], []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.paths.append(self.path)
                receiver.bodies.append(body)
                export = ExportTraceServiceRequest.FromString(body)
                for resource in export.resource_spans:
                    for scope in resource.scope_spans:
                        receiver.spans.extend((resource, span) for span in scope.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.shutdown()


def row(rid, status=200, model="tiny"):
    return {
        "id": rid,
        "ts": 1_790_000_000.0,
        "route": "chat.completions",
        "model": model,
        "adapter": None,
        "workload": "team-a",
        "status": status,
        "finish_reason": "stop" if status == 200 else None,
        "stream": 1,
        "prompt_tokens": 12 if status == 200 else None,
        "completion_tokens": 4 if status == 200 else None,
        "queue_s": 0.001,
        "ttft_s": 0.05 if status == 200 else None,
        "total_s": 0.25,
        "request": {"messages": [{"role": "user", "content": f"I am {EMAIL}"}], "temperature": 0.2, "max_tokens": 8},
        "response": {"choices": [{"role": "assistant", "content": "Noted.", "finish_reason": "stop"}]},
    }


def attributes(span):
    out = {}
    for kv in span.attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        out[kv.key] = (
            [v.string_value for v in value.array_value.values] if kind == "array_value" else getattr(value, kind)
        )
    return out


def captured_spans(tmp_path, receiver, content):
    cfg = CaptureConfig(enabled=True, otlp_endpoint=receiver.url, otlp_content=content)
    capture = Capture(cfg, tmp_path / "capture.sqlite", "capture-w1", {"tiny": "exports/tiny/v2"})
    capture.start()
    capture.record(row("chatcmpl-1"))
    capture.record(row("chatcmpl-2", status=404, model="nope"))
    capture.close()  # writes the queue, then flushes the spans
    return {attributes(span)["gen_ai.response.id"]: (resource, span) for resource, span in receiver.spans}


def test_each_captured_request_is_a_genai_span_without_content_by_default(tmp_path, receiver):
    spans = captured_spans(tmp_path, receiver, content=False)
    assert set(spans) == {"chatcmpl-1", "chatcmpl-2"} and set(receiver.paths) == {"/v1/traces"}
    resource, ok = spans["chatcmpl-1"]
    service = {kv.key: kv.value.string_value for kv in resource.resource.attributes}
    assert service["service.name"] == "tunewright"
    attrs = attributes(ok)
    assert ok.name == "chat tiny" and ok.kind == ok.SPAN_KIND_SERVER
    assert ok.end_time_unix_nano - ok.start_time_unix_nano == 250_000_000
    assert ok.start_time_unix_nano == 1_790_000_000 * 10**9
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.request.model"] == "tiny"
    assert attrs["gen_ai.usage.input_tokens"] == 12 and attrs["gen_ai.usage.output_tokens"] == 4
    assert attrs["gen_ai.request.temperature"] == 0.2 and attrs["gen_ai.request.max_tokens"] == 8
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs["tunewright.model.version"] == "exports/tiny/v2" and attrs["tunewright.workload"] == "team-a"
    assert attrs["tunewright.capture.window"] == "capture-w1" and ok.status.code == ok.status.STATUS_CODE_UNSET
    assert "gen_ai.input.messages" not in attrs and "gen_ai.output.messages" not in attrs
    _, failed = spans["chatcmpl-2"]
    failed_attrs = attributes(failed)
    assert failed.status.code == failed.status.STATUS_CODE_ERROR and failed_attrs["error.type"] == "404"
    assert "gen_ai.usage.input_tokens" not in failed_attrs and "tunewright.model.version" not in failed_attrs
    assert not any(EMAIL.encode() in body for body in receiver.bodies)


def test_content_goes_on_the_span_only_when_asked_and_without_pii(tmp_path, receiver):
    spans = captured_spans(tmp_path, receiver, content=True)
    attrs = attributes(spans["chatcmpl-1"][1])
    assert "[EMAIL]" in attrs["gen_ai.input.messages"] and "Noted." in attrs["gen_ai.output.messages"]
    assert not any(EMAIL.encode() in body for body in receiver.bodies)
