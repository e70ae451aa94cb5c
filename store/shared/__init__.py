"""Engine-neutral pieces both storage engines use: row decoders and rules moved out of
``store.sqlite`` so ``store.postgres`` shares them (one module per area)."""
