"""xdpscope desktop client (PySide6 + pyqtgraph): talks to an agent or reads a trace, never to BPF."""
