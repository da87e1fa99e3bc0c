"""xdpscope GUI (PySide6 + pyqtgraph): a client of the agent or of a trace file, never of BPF."""
from . import qt_guard

qt_guard.install()
