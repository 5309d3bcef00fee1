-- wrk pacing: each connection waits so that all of them together send RATE requests a
-- second (wrk itself has no fixed-rate mode). Usage: wrk -s bench/paced.lua … -- RATE TOKEN
local rate, token
function init(args)
  rate = tonumber(args[1] or "500")
  token = args[2] or ""
  wrk.headers["Authorization"] = "Bearer " .. token
end
function delay()
  -- connections are spread over threads; wrk.connections is not visible here, so the
  -- script gets the per-connection interval from the environment.
  return tonumber(os.getenv("PACE_MS") or "20")
end
