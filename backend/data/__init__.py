"""Data: no Qt, no bcc, no root. Samples, blocks, traces, summaries, the path model."""
