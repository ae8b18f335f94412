"""The benchmark suite (``ecgexp-bench``, ``make bench``): one module per benchmark, each with
``run(cfg, context) -> Result`` (figures against a baseline measured in the same run);
``runner`` runs them, writes ``benchmarks/results/<date>-<host>.json`` and prints the table.
Each benchmark also checks that its two sides computed the same thing (``checks``: exact where
the computation is the same, else within float32 rounding) and records the differences seen.

training    1. ecgexp's training loop vs a plain PyTorch loop (samples/s)
backbones   1c. the same for every model config (and linear probes of the encoders)
probe       1d. a linear-probe epoch on cached embeddings vs running the frozen encoder
dropout     1b. ecgexp's Dropout vs torch's nn.Dropout (CPU training steps/s)
data        2. the DataModule's shuffled batches vs raw h5py reads and the model's consumption
inference   3. ecgexp predict vs a plain no_grad loop; inference_mode, eval batch, compile
preprocess  4. parallel conversion vs serial; cached vs fresh filter designs
bootstrap   4. vectorised bootstrap vs a per-resample loop
heatmap     4. batched attribution maps vs a per-exam loop
gpu         5. bf16 vs fp32, channel/kernel choices, compile, loader starvation (CUDA only)
scaling     6. time per exam and peak memory against dataset size
"""
