print("{\"report\": [1, 2]}", flush=True)
import time; time.sleep(30)
