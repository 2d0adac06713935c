#!/usr/bin/python3
"""Executes ONE notebook through a real Jupyter kernel with nbclient, for lib/workbook/runners/kernel.ts.

    run_nbclient.py NOTEBOOK EXECUTED.ipynb RESULT.json [--kernel tslab] [--timeout SECONDS]

tslab reports a failing cell only on stderr: its execute_reply says status "error" (and later
queued cells "abort") but carries no ename/traceback, and with allow_errors nbclient raises
nothing. So this script runs the cells itself, one by one, reads every execute_reply through
nbclient's on_cell_executed hook, and stops at the first cell whose reply is not "ok" (or which
produced an error output, or logged an unhandled rejection), naming it. Exit status: 0 ok, 1 a cell failed, 2 the runner itself failed.
"""
import argparse
import contextlib
import json
import os
import sys
import time

try:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbclient.util import run_sync
except ImportError as e:  # the TypeScript side checks this first and says how to install
    print(f"run_nbclient.py: {e}: install Debian's python3-nbclient (apt-get install python3-nbclient jupyter-nbconvert)", file=sys.stderr)
    sys.exit(2)

# seconds a kernel may take to answer its first kernel_info request
STARTUP_TIMEOUT = 120


def first_line(source):
    for line in source.split("\n"):
        if line.strip():
            return line.strip()
    return ""


def text_of(outputs, name):
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream" and o.get("name") == name)


# Read back the kernel's check registry (lib/workbook/check.ts) after the last cell, in the kernel itself:
# a check that failed between two cells (an un-awaited async check) printed to a request nbclient
# no longer listens to, so only the registry still knows. The short wait lets late rejections settle.
QUERY = (
    "await new Promise((r) => setTimeout(r, 100));\n"
    "console.log('@@DDPM_CHECKS@@' + JSON.stringify((globalThis as any)[Symbol.for('ddpm-workbook.checks')] ?? []));\n"
)


def query_checks(client, timeout):
    msg_id = client.kc.execute(QUERY, store_history=False)
    out = ""
    deadline = time.time() + timeout
    while time.time() < deadline:
        msg = run_sync(client.kc.get_iopub_msg)(timeout=max(1, deadline - time.time()))
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream" and msg["content"].get("name") == "stdout":
            out += msg["content"]["text"]
        if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
            break
    for line in out.split("\n"):
        if line.startswith("@@DDPM_CHECKS@@"):
            return json.loads(line[len("@@DDPM_CHECKS@@"):])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("notebook")
    ap.add_argument("executed")
    ap.add_argument("result")
    ap.add_argument("--kernel", default="tslab")
    ap.add_argument("--timeout", type=int, default=1800, help="per cell, seconds")
    args = ap.parse_args()

    started = time.time()
    nb = nbformat.read(args.notebook, as_version=4)
    replies = {}

    def on_cell_executed(cell, cell_index, execute_reply):
        replies[cell_index] = execute_reply.get("content", {}) if execute_reply else {}

    def new_client():
        return NotebookClient(
            nb,
            timeout=args.timeout,
            startup_timeout=STARTUP_TIMEOUT,
            kernel_name=args.kernel,
            allow_errors=True,  # we judge every reply ourselves, below
            resources={"metadata": {"path": os.path.dirname(os.path.abspath(args.notebook))}},
            on_cell_executed=on_cell_executed,
        )

    client = new_client()
    failure = None
    cell_seconds = []
    startup = None
    code_cell = 0
    checks = None
    startup_retries = 0
    try:
        client.reset_execution_trackers()
        with contextlib.ExitStack() as stack:
            # A kernel that never answers its first kernel_info (seen once in seven full test runs on a
            # 2-core machine under full load: "Kernel didn't respond in 120 seconds", the kernel process
            # alive) is started afresh, once, before any cell ran; the result says so (startupRetries).
            # nbclient has already shut the silent kernel down when it raises.
            while True:
                try:
                    stack.enter_context(client.setup_kernel())
                    break
                except RuntimeError as e:
                    if startup_retries >= 1 or "didn't respond" not in str(e):
                        raise
                    startup_retries += 1
                    print("run_nbclient.py: %s; starting a fresh kernel (startup retry %d)" % (e, startup_retries), file=sys.stderr)
                    client = new_client()
                    client.reset_execution_trackers()
            startup = time.time() - started
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                code_cell += 1
                where = {"cell": index + 1, "codeCell": code_cell, "firstLine": first_line(cell.source)}
                t0 = time.time()
                try:
                    client.execute_cell(cell, index, execution_count=code_cell)
                except CellTimeoutError as e:
                    failure = dict(where, status="timeout", message=str(e))
                except DeadKernelError as e:
                    failure = dict(where, status="dead-kernel", message=str(e))
                cell_seconds.append(time.time() - t0)
                if failure:
                    break
                if not cell.source.strip():
                    continue
                reply = replies.get(index)
                status = reply.get("status") if reply else "no-reply"
                errors = [o for o in cell.outputs if o.get("output_type") == "error"]
                stderr = text_of(cell.outputs, "stderr")
                # tslab's kernel logs a rejection nobody awaited (an un-awaited async check) on
                # stderr with these prefixes and still replies "ok": that is a failure too
                if status == "ok" and not errors and ("UnhandledPromiseRejection:" in stderr or "UncaughtException:" in stderr):
                    status = "async-error"
                if status != "ok" or errors:
                    message = stderr
                    for o in errors:
                        message += "\n%s: %s\n%s" % (o.get("ename"), o.get("evalue"), "\n".join(o.get("traceback", [])))
                    if reply and reply.get("ename"):
                        message += "\n%s: %s" % (reply.get("ename"), reply.get("evalue"))
                    failure = dict(where, status=status if status != "ok" else "error-output",
                                   message=message.strip() or "(the kernel reported %r without a message)" % status)
                    break
            try:
                checks = query_checks(client, 120)
            except Exception as e:  # the run's verdict stands; the summary falls back to the printed lines
                print("run_nbclient.py: could not read the check registry: %s" % e, file=sys.stderr)
    except Exception as e:  # kernel start failures and the like: the runner failed, not a cell
        failure = {"cell": 0, "codeCell": 0, "firstLine": "(kernel)", "status": "runner", "message": "%s: %s" % (type(e).__name__, e)}
    nbformat.write(nb, args.executed)
    stdout = "".join(text_of(c.get("outputs", []), "stdout") for c in nb.cells if c.cell_type == "code")
    result = {
        "runner": "nbclient",
        "notebook": args.notebook,
        "executed": args.executed,
        "ok": failure is None,
        "seconds": time.time() - started,
        "startupSeconds": startup,
        "startupRetries": startup_retries,
        "cellSeconds": cell_seconds,
        "stdout": stdout,
    }
    if checks is not None:
        result["checks"] = checks
    if failure:
        result["failure"] = failure
    tmp = args.result + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, args.result)
    sys.exit(0 if failure is None else 1)


if __name__ == "__main__":
    main()
