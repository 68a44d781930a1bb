// Every test here boots TCG guests that use whole cores: running them side by side on a
// two-core machine only makes each slower and risks timeouts.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
