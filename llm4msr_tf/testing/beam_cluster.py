"""Beam's portable job service and external worker pool as separate local processes.

`LocalPortableCluster` starts the two services a Flink or Spark cluster gives a Beam Python
job, on this machine: Beam's job service (``apache_beam.runners.portability.
local_job_service_main``) and Beam's worker pool (``apache_beam.runners.worker.
worker_pool_main``), which starts every SDK worker as a *separate* ``python`` process, as a
Flink task manager or a Spark executor does (unlike ``--environment_type=LOOPBACK``, whose
worker lives inside the submitting process). A job then runs with ``cluster.beam_args()``::

    with LocalPortableCluster(workdir) as cluster:
        knowledge.job.run(KnowledgeConfig(..., runner="PortableRunner"), cluster.beam_args(workers=2))

Beam's job service runs every job on ONE SDK worker (its FnApiRunner ignores
``--direct_num_workers``). For ``workers > 1`` a second job service is started from this module
(``python -m llm4msr_tf.testing.beam_cluster --port P``): Beam's own `LocalJobServicer` with a
job type whose FnApiRunner takes its worker count from ``--direct_num_workers``, so bundles
are spread over that many separate SDK worker processes from the pool.

The worker processes get the environment given here, by default this process's without
``TF_USE_LEGACY_KERAS`` (what a real worker has), and the venv's ``bin`` first on ``PATH``
(the pool starts ``python`` from ``PATH``). The endpoints are ``localhost`` ports chosen free at
start; both services are stopped (by their process ids) on exit.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float, log_path: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log_path, errors="replace") as f:
                tail = f.read()[-2000:]
            raise RuntimeError(f"Beam service exited with code {proc.returncode} before listening on {port}:\n{tail}")
        try:
            with socket.create_connection(("localhost", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"Beam service did not listen on localhost:{port} within {timeout:.0f}s (log: {log_path})")


def worker_env(base: Optional[Dict[str, str]] = None, keep_keras_flag: bool = False) -> Dict[str, str]:
    """The environment of SDK worker processes: venv ``bin`` first on PATH; no Keras flag by default."""
    env = dict(os.environ if base is None else base)
    if not keep_keras_flag:
        env.pop("TF_USE_LEGACY_KERAS", None)
    bin_dir = os.path.dirname(os.path.abspath(sys.executable))
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


class LocalPortableCluster:
    """Beam's job service + external worker pool as local processes (a context manager)."""

    def __init__(self, workdir: str, env: Optional[Dict[str, str]] = None, start_timeout: float = 60.0,
                 parallel_job_service: bool = True) -> None:
        """Args: workdir (logs, staging), env (of the services and their workers; default
        `worker_env()`), start_timeout (seconds for each service to listen),
        parallel_job_service (also start the job service that runs jobs on several workers)."""
        self.workdir = os.path.abspath(workdir)
        self.env = worker_env() if env is None else env
        self.start_timeout = float(start_timeout)
        self.parallel_job_service = bool(parallel_job_service)
        self.job_port = self.pool_port = self.parallel_job_port = 0
        self._procs: List[subprocess.Popen] = []
        self._logs: List = []

    @property
    def pool_log(self) -> str:
        """The worker pool's log (one ``Starting worker`` line per SDK worker process)."""
        return os.path.join(self.workdir, "worker_pool.log")

    @property
    def job_service_log(self) -> str:
        """The job service's log."""
        return os.path.join(self.workdir, "job_service.log")

    def _start(self, args: List[str], log_path: str, port: int) -> None:
        log = open(log_path, "w")
        self._logs.append(log)
        # A session of its own: the pool's SDK workers join its process group, so `stop` can
        # end exactly the processes started here.
        proc = subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT,
                                env=self.env, cwd=self.workdir, start_new_session=True)
        self._procs.append(proc)
        _wait_for_port(port, proc, self.start_timeout, log_path)

    def start(self) -> "LocalPortableCluster":
        """Start the worker pool, then the job service; returns self."""
        os.makedirs(self.workdir, exist_ok=True)
        try:
            self.pool_port = free_port()
            self._start(["apache_beam.runners.worker.worker_pool_main", f"--service_port={self.pool_port}"],
                        self.pool_log, self.pool_port)
            self.job_port = free_port()
            self._start(["apache_beam.runners.portability.local_job_service_main", f"--port={self.job_port}",
                         f"--staging_dir={os.path.join(self.workdir, 'staging')}"],
                        self.job_service_log, self.job_port)
            if self.parallel_job_service:
                self.parallel_job_port = free_port()
                self._start(["llm4msr_tf.testing.beam_cluster", f"--port={self.parallel_job_port}",
                             f"--staging_dir={os.path.join(self.workdir, 'staging-parallel')}"],
                            os.path.join(self.workdir, "parallel_job_service.log"), self.parallel_job_port)
        except BaseException:
            self.stop()
            raise
        return self

    def beam_args(self, workers: int = 1) -> List[str]:
        """Pipeline options for ``--runner=PortableRunner`` on this cluster with `workers` SDK workers
        (1: Beam's own job service; more: the parallel one)."""
        workers = int(workers)
        if workers > 1 and not self.parallel_job_port:
            raise ValueError("workers > 1 needs LocalPortableCluster(parallel_job_service=True)")
        port = self.job_port if workers <= 1 else self.parallel_job_port
        return [f"--job_endpoint=localhost:{port}", "--environment_type=EXTERNAL",
                f"--environment_config=localhost:{self.pool_port}", f"--direct_num_workers={max(1, workers)}"]

    def workers_started(self) -> int:
        """How many SDK worker processes the pool has started so far."""
        with open(self.pool_log, errors="replace") as f:
            return sum("Starting worker with command" in line for line in f)

    def stop(self) -> None:
        """Stop both services and the SDK workers: SIGINT (Beam's clean shutdown), then the
        process group of each service (only processes started here) gets SIGTERM / SIGKILL."""
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)  # the group id is the leader's pid (start_new_session)
                except (ProcessLookupError, PermissionError):
                    break
                time.sleep(0.5)
            if proc.poll() is None:
                proc.wait(timeout=10)
        self._procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> "LocalPortableCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parallel_job_service(argv: Optional[Sequence[str]] = None) -> None:
    """Beam's LocalJobServicer whose jobs run on ``--direct_num_workers`` SDK workers."""
    import argparse
    import logging

    from apache_beam.options.pipeline_options import DirectOptions
    from apache_beam.portability.api import beam_job_api_pb2
    from apache_beam.runners.portability import local_job_service
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    class ParallelBeamJob(local_job_service.BeamJob):
        """A BeamJob whose FnApiRunner spreads bundles over ``--direct_num_workers`` workers."""

        def _invoke_runner(self):
            self.set_state(beam_job_api_pb2.JobState.RUNNING)
            options = self.pipeline_options()
            runner = fn_runner.FnApiRunner(provision_info=self._provision_info)
            # `run_pipeline` would read this option, but a job service calls `run_via_runner_api`.
            runner._num_workers = max(1, int(options.view_as(DirectOptions).direct_num_workers or 1))
            return runner.run_via_runner_api(self._pipeline_proto, options)

    parser = argparse.ArgumentParser(description=_parallel_job_service.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--staging_dir", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    servicer = local_job_service.LocalJobServicer(args.staging_dir, beam_job_type=ParallelBeamJob)
    port = servicer.start_grpc_server(args.port)
    logging.info("parallel Beam job service listening on localhost:%d", port)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        servicer.stop()


if __name__ == "__main__":
    _parallel_job_service()
