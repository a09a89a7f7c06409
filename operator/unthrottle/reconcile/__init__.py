"""One pass for one policy: fetch, decide, write. Filled in by the operator issue."""
