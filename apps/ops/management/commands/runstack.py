"""Run the whole stack in the foreground: web, stream, worker, beat and the demo peers (``make run``)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand

from apps.ops.demo import DEMO_LOGIN


class Command(BaseCommand):
    help = "Migrate, load demo data and run web + stream + worker + beat (+ webhook simulator) until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--simulator-port", type=int, default=8001)
        parser.add_argument("--stream-port", type=int, default=8002, help="the stream process (SSE, uvicorn)")
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--worker-concurrency", type=int, default=2)
        parser.add_argument("--no-demo", action="store_true", help="skip demo data, simulator and demo traffic")
        parser.add_argument("--skip-setup", action="store_true", help="do not migrate or load demo data")

    def handle(self, *args, **opts):
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        if str(settings.CELERY_BROKER_URL).startswith("filesystem://"):
            settings.BROKER_DIR.mkdir(parents=True, exist_ok=True)
            for folder in ("broker-processed", "broker-control"):
                (settings.VAR_DIR / folder).mkdir(parents=True, exist_ok=True)
        if not opts["skip_setup"]:
            call_command("migrate", interactive=False, verbosity=0)
            if not opts["no_demo"]:
                call_command("load_demo", simulator_port=opts["simulator_port"], web_port=opts["port"])

        python, manage = sys.executable, str(settings.BASE_DIR / "manage.py")
        bindir = os.path.dirname(python)
        celery = os.path.join(bindir, "celery")
        gunicorn = os.path.join(bindir, "gunicorn")
        beat_schedule = str(settings.VAR_DIR / "celerybeat-schedule")
        # The stream (server-sent events) is its own ASGI process, so long-lived connections never
        # hold a sync web worker. With no proxy in front, the console reaches it on its own port:
        # the pages name it (STREAM_PUBLIC_URL, also allowed by their CSP) and it admits the console's
        # origin (CORS with the session cookie, which is sent to any port of the same host).
        web_origin = f"http://{opts['host']}:{opts['port']}"
        stream_base = f"http://{opts['host']}:{opts['stream_port']}"
        os.environ.setdefault("STREAM_PUBLIC_URL", f"{stream_base}/api/v1/stream")
        os.environ.setdefault("STREAM_ALLOWED_ORIGINS", web_origin)
        uvicorn = os.path.join(bindir, "uvicorn")
        processes = {
            "web": [gunicorn, "alertcenter.wsgi", "--bind", f"{opts['host']}:{opts['port']}",
                    "--workers", str(opts["web_workers"]), "--access-logfile", "-", "--timeout", "30"],
            "stream": [uvicorn, "alertcenter.asgi:application", "--host", opts["host"], "--port",
                       str(opts["stream_port"]), "--timeout-graceful-shutdown", "5", "--no-access-log"],
            "worker": [celery, "-A", "alertcenter", "worker", "-Q", "detect,deliver,default",
                       "--concurrency", str(opts["worker_concurrency"]), "--loglevel", "INFO",
                       "--without-gossip", "--without-mingle", "--hostname", "worker@%h"],
            "beat": [celery, "-A", "alertcenter", "beat", "--loglevel", "INFO", "--schedule", beat_schedule],
        }
        commands = get_commands()
        if not opts["no_demo"]:
            if "webhook_simulator" in commands:
                processes["simulator"] = [python, manage, "webhook_simulator", "--port", str(opts["simulator_port"]),
                                          "--fail-rate", "0.2"]
            if "demo_traffic" in commands:
                processes["traffic"] = [python, manage, "demo_traffic", "--url", f"http://127.0.0.1:{opts['port']}"]

        children: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for name, argv in processes.items():
            children[name] = subprocess.Popen(argv, cwd=settings.BASE_DIR)
        base = f"http://{opts['host']}:{opts['port']}"
        self.stdout.write(self.style.SUCCESS("\nAlert Center is starting:"))
        self.stdout.write(f"  console      {base}/")
        self.stdout.write(f"  admin        {base}/admin/")
        self.stdout.write(f"  API docs     {base}/api/docs/")
        self.stdout.write(f"  health       {base}/api/v1/health")
        self.stdout.write(f"  stream       {os.environ['STREAM_PUBLIC_URL']}")
        if "simulator" in processes:
            self.stdout.write(f"  simulator    http://127.0.0.1:{opts['simulator_port']}/")
        if not opts["no_demo"]:
            self.stdout.write(f"  demo login   {DEMO_LOGIN[0]} / {DEMO_LOGIN[1]}")
        self.stdout.write(f"  processes    {', '.join(processes)}  (Ctrl-C stops everything)\n")
        self.stdout.flush()

        exit_code = 0
        while not stopping:
            for name, proc in children.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with code {proc.returncode}; stopping the stack")
                    stopping, exit_code = True, 1
                    break
            time.sleep(0.5)
        for proc in children.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        self.stdout.write("stopped")
        sys.exit(exit_code)
