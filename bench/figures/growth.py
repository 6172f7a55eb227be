"""placeholder"""
from typing import Any

def run(plan: Any) -> list[dict[str, Any]]:
    return []
