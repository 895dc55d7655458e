"""The free-port check of ``make run`` agrees with uvicorn's own bind (SO_REUSEADDR): a port
whose last connections are in TIME_WAIT is free, one with a listener is not."""

import socket

import pytest

from devtools.stack import free_port, port_free


def listen(port):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    server.bind(("127.0.0.1", port))
    server.listen()
    return server


def test_a_port_left_in_time_wait_by_a_stopped_server_is_free():
    port = free_port()
    server = listen(port)
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server closes first: its end of the connection stays in TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # what the check did before: "port ... is taken"
    assert port_free(port)
    listen(port).close()  # and uvicorn's bind does succeed


def test_a_port_with_a_listener_is_taken():
    port = free_port()
    with listen(port):
        assert not port_free(port)
