"""cynic-harness specifics on top of netutil."""
import os

import pytest

from netutil import Api, Program, TcpServer, binary, echo_handler


class Harness(Program):
    def __init__(self, *extra, seed=1, **kw):
        args = [binary("cynic-harness"), "-host", "127.0.0.1", "-port", "0", "-seed", str(seed), *extra]
        super().__init__(args, "API listening", **kw)
        self.api = Api(self.host, self.port)

    def create(self, name, upstream, listen="127.0.0.1:0", **kw):
        body = {"name": name, "listen": listen, "upstream": upstream, **kw}
        st, js, raw = self.api.post("/proxies", body)
        assert st == 201, raw
        return js

    def listen_port(self, proxy):
        return int(proxy["listen"].rsplit(":", 1)[1])

    def add_toxic(self, proxy, **body):
        st, js, raw = self.api.post(f"/proxies/{proxy}/toxics", body)
        assert st == 200, raw
        return js

    def stop(self, timeout=20.0):
        self.api.close()
        return super().stop(timeout)


@pytest.fixture
def harness():
    h = Harness()
    yield h
    h.stop()


@pytest.fixture
def echo():
    """An echo server for a harness proxy's upstream."""
    up = TcpServer(echo_handler)
    yield up
    up.close()
