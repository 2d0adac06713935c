"""Serves the project's JupyterLab build (lib/workbook/jupyterlab/build/<variant>) with Debian's
jupyterlab_server (LabServerApp on jupyter_server 1.23), MathJax from Debian's libjs-mathjax.

Run with Debian's /usr/bin/python3 (npm run lab and the tests do):
  serve.py BUILD_DIR [jupyter_server options: --ServerApp.root_dir=... --port=... --no-browser]
The tslab kernel is whatever JUPYTER_PATH registers (the caller puts the project's kernel spec
first); the kernel inherits this process's environment (DDPM_WORKBOOK_MODE for the tests).
"""
import atexit
import json
import os
import shutil
import sys
import tempfile

from jupyter_core.paths import jupyter_config_dir
from jupyter_server.utils import url_path_join
from jupyterlab_server import LabServerApp
from tornado.web import StaticFileHandler

HERE = os.path.dirname(os.path.abspath(__file__))
MATHJAX_DIR = os.environ.get("DDPM_MATHJAX_DIR", "/usr/share/javascript/mathjax")
# the project's own MathJax settings (shared with the classic notebook, see server.ts)
MATHJAX_LOCAL = os.path.join(HERE, "static", "components", "MathJax", "config", "local")

# Only this launcher's settings and the caller's JUPYTER_PATH decide what runs: a jupyter_server
# config in ~/.jupyter (a token, another root) would make the tests depend on the machine.
os.environ["JUPYTER_NO_CONFIG"] = "1"
# ...for which jupyter_core makes an empty temporary config folder (jupyter-clean-cfg-*) that it
# never removes: one left in the temporary folder per server started. Removed at exit here.
_CLEAN_CFG = jupyter_config_dir()
if os.path.dirname(_CLEAN_CFG) == tempfile.gettempdir() and os.path.basename(_CLEAN_CFG).startswith("jupyter-clean-cfg-"):
    atexit.register(shutil.rmtree, _CLEAN_CFG, True)


def _build_dir():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit("serve.py: the first argument must be the build folder (lib/workbook/jupyterlab/build/<variant>)")
    build = os.path.abspath(sys.argv.pop(1))
    if not os.path.isfile(os.path.join(build, "bundle.js")):
        sys.exit(f"serve.py: {build} holds no bundle.js: build it first (node lib/workbook/jupyterlab/build.js)")
    if not os.path.isfile(os.path.join(MATHJAX_DIR, "MathJax.js")):
        sys.exit(f"serve.py: no MathJax at {MATHJAX_DIR}: sudo apt-get install libjs-mathjax")
    return build


BUILD = _build_dir()
with open(os.path.join(BUILD, "build-info.json"), encoding="utf-8") as f:
    INFO = json.load(f)


class WorkbookLab(LabServerApp):
    """JupyterLab at /lab, assembled by build.js; the page, schemas and themes come from BUILD."""

    name = "ddpm_workbook_lab"
    load_other_extensions = False
    extension_url = "/lab"
    default_url = "/lab"
    app_url = "/lab"
    app_name = "JupyterLab"
    app_version = INFO["jupyterlab"]
    app_settings_dir = os.path.join(BUILD, "settings")
    schemas_dir = os.path.join(BUILD, "schemas")
    themes_dir = os.path.join(BUILD, "themes")
    static_dir = BUILD
    templates_dir = os.path.join(HERE, "templates")
    # user settings and workspaces would otherwise go to ~/.jupyter/lab: a newcomer's own choices
    # stay there, the tests pass a fresh folder (DDPM_LAB_USER_DIR)
    user_settings_dir = os.path.join(os.environ.get("DDPM_LAB_USER_DIR", os.path.expanduser("~/.jupyter/lab")), "user-settings")
    workspaces_dir = os.path.join(os.environ.get("DDPM_LAB_USER_DIR", os.path.expanduser("~/.jupyter/lab")), "workspaces")

    def initialize_settings(self):
        super().initialize_settings()
        base = self.serverapp.base_url
        # JupyterLab's MathJax 2 extension loads fullMathjaxUrl (jupyterlab_server defaults it to a CDN)
        self.settings["mathjax_url"] = url_path_join(base, "mathjax", "MathJax.js")
        # CommonHTML output; local/workbook (static/components/MathJax/config/local/workbook.js)
        # drops MathJax's pauses between its phases
        self.settings["mathjax_config"] = "TeX-AMS_CHTML-full,Safe,local/workbook"

    def initialize_handlers(self):
        super().initialize_handlers()
        # the first matching handler serves: the project's MathJax settings before Debian's tree
        self.handlers.append((r"/mathjax/config/local/(workbook\.js)", StaticFileHandler, {"path": MATHJAX_LOCAL}))
        self.handlers.append((r"/mathjax/(.*)", StaticFileHandler, {"path": MATHJAX_DIR}))


def _jupyter_server_extension_points():
    # jupyter_server finds the app through the module that launches it (this script, as __main__)
    return [{"module": __name__, "app": WorkbookLab}]


if __name__ == "__main__":
    WorkbookLab.launch_instance()
