"""A real ComfyUI server process (the host's main.py, CPU) with this pack installed, and an HTTP client.

    with start_server() as server:                  # or the session fixture `comfy_server`
        client = server.client
        name = server.install_model("checkpoints", standins.cached_sd15_checkpoint("reduced"))
        prompt_id = client.queue(prompt)
        entry = client.wait(prompt_id, timeout=120)  # /history entry; raises ServerPromptError on failure

Each server gets its own base directory (models, custom_nodes, input, output, temp, user, database), so
parallel test sessions never share state; the process is killed when the server is stopped.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Mapping

from tools.comfy_host import PACK_DIR_NAME, REPO_ROOT, comfy_root

MODEL_FOLDERS = ("checkpoints", "controlnet", "animatediff_models", "animatediff_motion_lora", "vae", "loras")


class ServerError(RuntimeError):
    """The server did not start, or answered an HTTP request with an error."""


class ServerPromptError(RuntimeError):
    """POST /prompt was rejected (validation), or the prompt failed or was interrupted while running."""

    def __init__(self, message: str, details: Any = None):
        super().__init__(message)
        self.details = details


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyClient:
    """Minimal ComfyUI HTTP client (stdlib only)."""

    def __init__(self, base_url: str, log_path: Path | None = None):
        self.base_url = base_url.rstrip("/")
        self.client_id = str(uuid.uuid4())
        self.log_path = log_path

    def _request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw.decode(errors="replace")
            if path == "/prompt" and method == "POST":
                raise ServerPromptError(_format_rejection(payload), payload) from None
            raise ServerError(f"{method} {path} -> HTTP {err.code}: {payload}") from None
        return json.loads(raw) if raw else None

    def system_stats(self) -> dict:
        return self._request("GET", "/system_stats", timeout=5)

    def object_info(self) -> dict[str, dict]:
        return self._request("GET", "/object_info", timeout=120)

    def queue(self, prompt: dict, extra_data: dict | None = None) -> str:
        """POST /prompt; returns the prompt id. Raises ServerPromptError with the node errors if rejected."""
        body = {"prompt": prompt, "client_id": self.client_id}
        if extra_data:
            body["extra_data"] = extra_data
        answer = self._request("POST", "/prompt", body)
        if answer.get("node_errors"):
            raise ServerPromptError(_format_rejection(answer), answer)
        return answer["prompt_id"]

    def queue_state(self) -> dict:
        """GET /queue: {"queue_running": [...], "queue_pending": [...]}, items as [number, prompt_id, ...]."""
        return self._request("GET", "/queue")

    def history(self, prompt_id: str) -> dict | None:
        return self._request("GET", f"/history/{prompt_id}").get(prompt_id)

    def wait(self, prompt_id: str, timeout: float = 300, poll: float = 0.25) -> dict:
        """Block until the prompt finished; returns its /history entry ("outputs", "status", ...).
        Raises ServerPromptError with the failing node's message on execution_error or interruption."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.history(prompt_id)
            if entry is not None and entry.get("status", {}).get("completed") is not None:
                status = entry["status"]
                for event, data in status.get("messages", []):
                    if event == "execution_error":
                        raise ServerPromptError(
                            f"Node {data.get('node_id')} ({data.get('node_type')}) raised "
                            f"{data.get('exception_type')}: {data.get('exception_message')}", data)
                    if event == "execution_interrupted":
                        raise ServerPromptError(f"Prompt interrupted at node {data.get('node_id')}", data)
                if status.get("status_str") != "success":
                    raise ServerPromptError(f"Prompt ended with status {status.get('status_str')!r}", status)
                return entry
            time.sleep(poll)
        raise TimeoutError(f"Prompt {prompt_id} not finished after {timeout} s. Server log tail:\n{self.log_tail()}")

    def run(self, prompt: dict, timeout: float = 300) -> dict:
        return self.wait(self.queue(prompt), timeout)

    def interrupt(self) -> None:
        self._request("POST", "/interrupt", {})

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text(errors="replace")[-chars:]


def _format_rejection(payload: Any) -> str:
    if not isinstance(payload, dict):
        return f"Prompt rejected: {payload}"
    err = payload.get("error") or {}
    lines = [f"Prompt rejected: {err.get('message', '')} {err.get('details', '')}".rstrip()]
    for node_id, info in (payload.get("node_errors") or {}).items():
        for e in info.get("errors", []):
            lines.append(f"  node {node_id} ({info.get('class_type')}): {e.get('message')}: {e.get('details')}")
    return "\n".join(lines)


class ComfyServer:
    """A started server. Use as a context manager or call stop()."""

    def __init__(self, base_dir: Path, port: int, proc: subprocess.Popen, log_path: Path, owns_base: bool):
        self.base_dir = base_dir
        self.port = port
        self.proc = proc
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"
        self.client = ComfyClient(self.url, log_path)
        self._owns_base = owns_base

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    def models_dir(self, folder: str) -> Path:
        path = self.base_dir / "models" / folder
        path.mkdir(parents=True, exist_ok=True)
        return path

    def install_model(self, folder: str, source: str | os.PathLike, name: str | None = None) -> str:
        """Symlink a file into the server's models/<folder>; returns the name loaders list it under.
        (ComfyUI rescans a folder when its mtime changes, so no restart is needed.)"""
        source = Path(source).resolve()
        name = name or source.name
        link = self.models_dir(folder) / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source)
        return name

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def import_failures(self) -> list[str]:
        """Log lines in which ComfyUI reports a pack in this server's custom_nodes that failed to import
        (core's own optional extras, e.g. audio nodes without torchaudio, are not counted)."""
        packs = str(self.base_dir / "custom_nodes")
        return [line for line in self.log_text().splitlines()
                if packs in line and ("IMPORT FAILED" in line or "module for custom nodes" in line)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: this reaches only the server
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        if self._owns_base and not os.environ.get("ADMK_KEEP_SERVER_DIR"):
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> "ComfyServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def prepare_base_dir(base_dir: Path, extra_custom_nodes: Mapping[str, str | os.PathLike] | None = None) -> Path:
    """Lay out a ComfyUI base directory with this pack linked into custom_nodes (and every
    `extra_custom_nodes` {folder name: pack dir}, e.g. other packs to test side by side); returns the extra
    model paths YAML that also registers the AnimateDiff folders (in case the pack is not loaded)."""
    for sub in ("input", "output", "temp", "user", "custom_nodes"):
        (base_dir / sub).mkdir(parents=True, exist_ok=True)
    for folder in MODEL_FOLDERS:
        (base_dir / "models" / folder).mkdir(parents=True, exist_ok=True)
    packs = {PACK_DIR_NAME: REPO_ROOT}
    packs.update({name: Path(source).resolve() for name, source in (extra_custom_nodes or {}).items()})
    for name, source in packs.items():
        link = base_dir / "custom_nodes" / name
        if not link.exists():
            link.symlink_to(source, target_is_directory=True)
    yaml_path = base_dir / "extra_model_paths.yaml"
    lines = ["admk_tests:", f"  base_path: {base_dir / 'models'}"]
    lines += [f"  {folder}: {folder}/" for folder in MODEL_FOLDERS]
    yaml_path.write_text("\n".join(lines) + "\n")
    return yaml_path


def start_server(base_dir: str | os.PathLike | None = None, port: int | None = None, timeout: float = 240,
                 extra_args: tuple[str, ...] = (), python: str | None = None,
                 extra_custom_nodes: Mapping[str, str | os.PathLike] | None = None) -> ComfyServer:
    """Start `main.py --cpu` on 127.0.0.1 with its own base directory; returns once /system_stats answers.
    `extra_custom_nodes` ({folder name: pack dir}) are linked into custom_nodes next to this pack."""
    root = comfy_root()
    owns_base = base_dir is None
    base = Path(base_dir) if base_dir is not None else Path(tempfile.mkdtemp(prefix="admk-server-"))
    yaml_path = prepare_base_dir(base, extra_custom_nodes)
    log_path = base / "server.log"
    last_error: Exception | None = None
    for _attempt in range(3):  # a free port can be taken by someone else before the server binds it
        chosen = port or free_port()
        cmd = [python or sys.executable, str(root / "main.py"), "--cpu", "--listen", "127.0.0.1",
               "--port", str(chosen), "--base-directory", str(base), "--extra-model-paths-config", str(yaml_path),
               "--database-url", f"sqlite:///{base / 'user' / 'comfyui.db'}", "--disable-api-nodes",
               *extra_args]
        log = open(log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, cwd=str(root), stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        log.close()
        server = ComfyServer(base, chosen, proc, log_path, owns_base)
        atexit.register(server.stop)  # a crashed test session still takes the server down
        try:
            _wait_ready(server, timeout)
            return server
        except ServerError as err:
            last_error = err
            server._owns_base = False
            server.stop()
            if "address already in use" not in server.log_text().lower() or port is not None:
                break
    if owns_base and not os.environ.get("ADMK_KEEP_SERVER_DIR"):
        shutil.rmtree(base, ignore_errors=True)
    raise last_error  # type: ignore[misc]


def _wait_ready(server: ComfyServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise ServerError(f"ComfyUI exited with code {server.proc.returncode} during startup. Log tail:\n"
                              f"{server.log_text()[-4000:]}")
        try:
            server.client.system_stats()
            return
        except (urllib.error.URLError, ConnectionError, OSError, ServerError):
            time.sleep(0.5)
    raise ServerError(f"ComfyUI did not answer /system_stats within {timeout} s. Log tail:\n"
                      f"{server.log_text()[-4000:]}")
