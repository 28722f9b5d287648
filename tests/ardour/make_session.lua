-- ardour7-lua make_session.lua: a session whose track "In" holds a recorded
-- take, to be overwritten with the test input (Ardour 7.3 cannot import audio
-- without its GUI, but it can record a take from the dummy backend's silence).
--
-- Parameters (environment):
--   ARD_SESSION  session folder (must not exist)   ARD_NAME  snapshot name ("t")
--   ARD_RATE     sample rate (48000)               ARD_CH    track inputs (2)
--   ARD_SECONDS  length of the take (>= the test input)
-- Prints "TAKE <path>" per channel (mono files) and "DONE" at the end; the
-- driver (tests/ardour_host.py) overwrites the takes' samples in place.
local dir  = assert(os.getenv("ARD_SESSION"), "ARD_SESSION")
local name = os.getenv("ARD_NAME") or "t"
local rate = tonumber(os.getenv("ARD_RATE") or "48000")
local nch  = tonumber(os.getenv("ARD_CH") or "2")
local secs = tonumber(os.getenv("ARD_SECONDS") or "5")

-- "None (Dummy)" is not in available_backends(), but set_backend works;
-- the "Silence" device records zeros at real-time speed.
AudioEngine:set_backend("None (Dummy)", "", "")
AudioEngine:set_device_name("Silence")
if not create_session(dir, name, rate) then print("FATAL create_session failed"); os.exit(2) end
print("INFO rate", Session:nominal_sample_rate(), "block", Session:get_block_size())

local t = Session:new_audio_track(nch, 2, nil, 1, "In",
  ARDOUR.PresentationInfo.max_order, ARDOUR.TrackMode.Normal, true):front()
t:rec_enable_control():set_value(1, PBD.GroupControlDisposition.NoGroup)
Session:maybe_enable_record(false)
Session:request_roll(ARDOUR.TransportRequestSource.TRS_UI)
-- Poll the playhead: on a busy machine the roll starts late, and a fixed
-- sleep gave takes shorter than the input.
local waited = 0
while Session:transport_sample() < secs * rate and waited < secs * 4 + 30 do
  sleep(0.1); waited = waited + 0.1
end
sleep(0.2)
Session:request_stop(false, false, ARDOUR.TransportRequestSource.TRS_UI)
sleep(0.5)
Session:disable_record(false, false)
t:rec_enable_control():set_value(0, PBD.GroupControlDisposition.NoGroup)
-- Control changes are applied asynchronously: saved too early, the track
-- stays armed and later monitors the (silent) dummy input instead of disk.
sleep(0.5)
if t:rec_enable_control():get_value() ~= 0 then print("FATAL track still rec-armed"); os.exit(3) end

local n = 0
for r in t:to_track():playlist():region_list():iter() do -- (RegionList has no front())
  local ar = r:to_audioregion()
  print("REGION", r:name(), "pos", r:position():samples(), "len", r:length():samples())
  for i = 0, ar:n_channels() - 1 do print("TAKE " .. ar:source(i):to_filesource():path()) end
  n = n + 1
end
if n ~= 1 then print("FATAL expected one recorded region, got", n); os.exit(3) end
Session:save_state("", false, false, false, false, false)
close_session()
print("DONE")
