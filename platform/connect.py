"""Joining a Ray cluster, or starting an embedded one, safely: every server of a local Ray on
127.0.0.1 only, Ray's token file owner-only, and an address that cannot be reached refused with one
line within seconds instead of after Ray's minutes of retries.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray
from ray.exceptions import AuthenticationError

from .errors import UserError, first_line
from .signals import reclaim_sigterm, sigterm_received

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
CONNECT_TIMEOUT_S = 10.0  # the TCP check of an --address, before Ray's own (minutes-long) retries
GCS_WAIT = {  # Ray's wait for a GCS that accepts connections but does not answer, ~20 s in all
    "RAY_gcs_server_port_wait_time_s": "1",  # attempts (Python, node.py)
    "RAY_py_gcs_connect_timeout_s": "10",  # seconds per attempt (C++ RayConfig; default 30)
}
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def ensure_ray(address: str | None = None, num_cpus: int | None = None,
               verbose: bool = False) -> bool:
    """Connect to ``address`` ('auto', HOST:PORT, ray://...), or start an embedded local Ray that
    listens on 127.0.0.1 only. Returns True if we called ``ray.init`` (the caller shuts it down).
    An address that cannot be reached raises ``UserError`` within ~30 s."""
    if ray.is_initialized():
        return False
    if not verbose:  # "token authentication is enabled": good news, not a warning to act on
        logging.getLogger(AUTH_LOGGER).setLevel(logging.ERROR)
    target = _resolve_address(address) if address else None
    try:
        if target is None:
            _start_local(num_cpus, verbose)
        else:
            _connect(target, verbose)
    except SystemExit:  # a SIGTERM during ray.init, through the handlers Ray has installed
        if ray.is_initialized():
            ray.shutdown()
        raise sigterm_received() from None
    reclaim_sigterm()
    return True


def _start_local(num_cpus: int | None, verbose: bool) -> None:
    """A new single-machine Ray ('local': never a cluster found through RAY_ADDRESS or
    /tmp/ray/ray_current_cluster), its node address 127.0.0.1 so every server binds loopback."""
    protect_auth_token(create=True)
    with _loopback_stays_loopback():
        ray.init(address="local", num_cpus=num_cpus, _node_ip_address=LOOPBACK,
                 include_dashboard=False, log_to_driver=verbose, logging_level=_level(verbose))
    protect_auth_token(create=False)


def _connect(target: str, verbose: bool) -> None:
    """Join the cluster at ``target`` (host:port): TCP-reachable first, then Ray's own wait
    bounded, so a wrong address fails in seconds, not after Ray's five minutes of retries."""
    host, port = _host_port(target)
    _check_reachable(target, host, port)
    if not target.startswith("ray://") and not _local_raylets():
        raise UserError(f"cannot join the Ray cluster at {target}: no Ray node runs on this "
                        "machine; run binarena on a node of the cluster (one started with "
                        "`ray start`), or connect through Ray Client: --address ray://HOST:10001")
    protect_auth_token(create=False)
    try:
        with _loopback_stays_loopback(), _bounded_gcs_wait():
            ray.init(address=target, include_dashboard=False, log_to_driver=verbose,
                     logging_level=_level(verbose))
    except (ConnectionError, RuntimeError, TimeoutError, AuthenticationError) as exc:
        if _refused_token(exc):
            raise UserError(f"the Ray cluster at {target} asks for its token: set "
                            "RAY_AUTH_MODE=token, the token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH "
                            "or ~/.ray/auth_token") from None
        raise UserError(f"cannot join the Ray cluster at {target}: {first_line(exc)} "
                        "(is it running? `ray status` there)") from None


def _level(verbose: bool) -> int:
    return logging.INFO if verbose else logging.WARNING


def _refused_token(exc: BaseException | None) -> bool:
    """Whether Ray failed on the cluster's token auth, somewhere down its chain of errors (the
    innermost one survives only as text in a traceback)."""
    while exc is not None:
        if isinstance(exc, AuthenticationError) or "InvalidAuthToken" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _resolve_address(address: str) -> str | None:
    """'auto' as the cluster running on this machine, 'local' as None (start one), 127.0.0.1 and
    localhost kept as they are (Ray would rewrite them to the machine's external address, where a
    loopback-only cluster does not listen)."""
    from ray._private import services

    if address.startswith("ray://"):  # Ray Client: the server resolves the rest
        return address
    try:
        with _loopback_stays_loopback():
            return services.canonicalize_bootstrap_address(address)
    except ConnectionError:
        raise UserError(f"--address {address}: no running Ray cluster found on this machine; "
                        "start one (`ray start --head`) or give its HOST:PORT") from None
    except ValueError as exc:
        raise UserError(f"--address {address}: {first_line(exc)} (expected HOST:PORT, "
                        "'auto' or ray://HOST:PORT)") from None


def _host_port(target: str) -> tuple[str, int]:
    hostport = target.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise UserError(f"--address {target}: expected HOST:PORT") from None


def _check_reachable(target: str, host: str, port: int) -> None:
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except TimeoutError:
        reason = f"no answer within {CONNECT_TIMEOUT_S:g} s"
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    else:
        return
    raise UserError(f"cannot reach the Ray cluster at {target}: {reason} (is it running? "
                    "`ray status` there)")


def _local_raylets() -> list[str]:
    """Node ids of the raylets running on this machine: a driver joins the cluster through one."""
    from ray._private import services

    return list(services.find_node_ids())


@contextmanager
def _loopback_stays_loopback() -> Iterator[None]:
    """Ray replaces 127.0.0.1 (as a node address or an --address) by the machine's external
    address (``services.resolve_ip_for_localhost``) unless it runs as a single-machine Ray
    (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read once at import into
    ``ray_constants.ENABLE_RAY_CLUSTER``); with that address its gcs_server, raylet and workers
    bind every interface. Ray reads the flag at call time, so it is switched off for ``ray.init``
    alone."""
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


@contextmanager
def _bounded_gcs_wait() -> Iterator[None]:
    """Ray's wait for a GCS that does not answer: 20 attempts of ~40 s by default, cut to one
    of ~20 s (settings a user exported win). The C++ half is read when ``Config`` is
    initialised, as Ray itself does before ``ray.init`` when it turns token auth on."""
    # Ray's _raylet.pyi declares only a few of the module's names
    from ray._raylet import Config  # type: ignore[attr-defined]

    added = {k: v for k, v in GCS_WAIT.items() if k not in os.environ}
    os.environ.update(added)
    try:
        Config.initialize("")
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def protect_auth_token(create: bool) -> None:
    """Ray's token file (~/.ray/auth_token) is the key to the cluster, and Ray writes it with the
    process umask (0644, readable by every user). Create it owner-only before Ray would (a new
    local cluster), and make an existing one owner-only."""
    from ray._private.authentication.authentication_token_setup import _get_default_token_path

    path = _get_default_token_path()
    try:
        if create and _token_comes_from_default_path() and not path.exists():
            _write_private(path, secrets.token_hex(32))  # as Ray's own generator
        if path.is_file() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError as exc:
        log.warning("could not make Ray's token file %s owner-only: %s", path, exc.strerror)


def _token_comes_from_default_path() -> bool:
    """Token auth on (Ray turns it on for a local cluster unless RAY_AUTH_MODE says otherwise)
    and no token given through the environment."""
    mode = os.environ.get("RAY_AUTH_MODE", "token").lower()
    return mode == "token" and not os.environ.get("RAY_AUTH_TOKEN") and \
        not os.environ.get("RAY_AUTH_TOKEN_PATH")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the start, never over an existing file
    (another driver may have just created it): a private temporary file, hard-linked in place."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".auth_token.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
