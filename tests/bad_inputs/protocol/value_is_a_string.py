print("{\"result\": {\"value\": \"high\"}}", flush=True)
