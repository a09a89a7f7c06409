"""One pass for one policy: read a snapshot, plan from it (pure), apply the plan."""
