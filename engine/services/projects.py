"""Project libraries: projects, their stages and the leads found in step ⑥."""
from __future__ import annotations
