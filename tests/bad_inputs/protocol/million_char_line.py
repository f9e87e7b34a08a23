# A malformed protocol line of a million characters: the stored reason must stay short.
print("{\"report\": " + "x" * 1_000_000, flush=True)
import time; time.sleep(30)
