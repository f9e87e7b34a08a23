import sys
print("training...", flush=True)
print("CUDA out of memory (pretend)", file=sys.stderr, flush=True)
sys.exit(7)
