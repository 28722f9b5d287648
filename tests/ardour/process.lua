-- ardour7-lua process.lua: puts a plugin on track "In" of a session made by
-- make_session.lua, then renders the take through it twice:
--   (a) freewheel export(s) of the master bus (Ardour's offline render),
--   (b) a real-time roll whose output is recorded into a new track "Cap".
--
-- Parameters (environment):
--   ARD_SESSION, ARD_NAME  the session (snapshot name "t")
--   ARD_PLUGIN     VST3 plugin name as Ardour lists it ("" = none: dry baseline)
--   ARD_EXISTING   1 = use the plugin already on "In" (restored from the saved
--                  session with its state) instead of inserting a new one
--   ARD_SAVE_ONLY  1 = after the exports, save the session and stop (the
--                  driver then edits the plugin's saved state)
--   ARD_STRICT     1 = strict I/O on "In" (the track keeps 2 outputs)
--   ARD_PANNER_BYPASS 1 = bypass the track's panner: a non-strict track with
--                  a 6-output plugin gets 6 output ports, and its panner
--                  (6 in, 6 out) outputs silence; bypassed, output port k
--                  carries plugin output k
--   ARD_PARAMS     "Label=value;Label=value" plugin controls to set (labels as
--                  listed in the PARAM lines)
--   ARD_OUTDIR     folder for the exports
--   ARD_EXPORTS    comma list of exports, "name" or "name@k": with @k the
--                  master bus is fed by In's output ports k and k+1 only
--                  (default "export")
--   ARD_RT         1 = real-time roll (default 1)
--   ARD_CAPTURE    "master" (default): Cap records the master bus (2 ch);
--                  "in": Cap records every output port of "In"
--   ARD_SETTLE     seconds to wait after inserting the plugin (default 2)
-- Diagnostics (the export repeatability investigation; unused by the ring):
--   ARD_GAP        seconds to wait after each export (default 0)
--   ARD_REACTIVATE 1 = deactivate and re-activate the plugin before each
--                  export; ARD_REACTIVATE_WAIT seconds after that (default 1)
--   ARD_EXPORT_PREROLL  Ardour's export pre-roll in seconds (its default: 1 s
--                  of silence through the plugins before the range)
-- Prints PARAM / LATENCY / EXPORT / CAPTURE lines for the driver, and DONE.
-- Does not save the session (except with ARD_SAVE_ONLY).
local dir     = assert(os.getenv("ARD_SESSION"), "ARD_SESSION")
local name    = os.getenv("ARD_NAME") or "t"
local pname   = os.getenv("ARD_PLUGIN") or ""
local outdir  = os.getenv("ARD_OUTDIR") or (dir .. "/export")
local exports = os.getenv("ARD_EXPORTS") or "export"
local do_rt   = (os.getenv("ARD_RT") or "1") == "1"
local capture = os.getenv("ARD_CAPTURE") or "master"
local settle  = tonumber(os.getenv("ARD_SETTLE") or "2")
local PRESET  = "4f2b1d8a-0c7e-4a8e-9a55-7a4c2b0f1e01" -- float32.preset, installed by the driver
io.stdout:setvbuf("line") -- interleaved with the plugins' log lines (stderr)
local function fail(msg, code) print("FATAL " .. msg); close_session(); os.exit(code or 2) end
local function nogroup() return PBD.GroupControlDisposition.NoGroup end

if os.getenv("ARD_EXPORT_PREROLL") then
  ARDOUR.config():set_export_preroll(tonumber(os.getenv("ARD_EXPORT_PREROLL")))
end
AudioEngine:set_backend("None (Dummy)", "", "")
AudioEngine:set_device_name("Silence")
if not load_session(dir, name) then print("FATAL load_session failed"); os.exit(2) end
local sr = Session:nominal_sample_rate()

local t = Session:route_by_name("In")
if t:isnil() then fail("no track In") end
local reg = nil
for r in t:to_track():playlist():region_list():iter() do reg = r end
if not reg then fail("no region on track In") end
local rpos, rlen = reg:position():samples(), reg:length():samples()
print("INFO region pos", rpos, "len", rlen, "rate", sr, "block", Session:get_block_size())

-- Play from disk (an armed track would monitor the silent dummy input).
t:rec_enable_control():set_value(0, nogroup())
t:monitoring_control():set_value(ARDOUR.MonitorChoice.MonitorDisk, nogroup())

-- The plugin: the one restored with the session, or a new one.
local proc = nil
if os.getenv("ARD_EXISTING") == "1" then
  local i = 0
  while true do
    local p = t:nth_processor(i)
    if p:isnil() then break end
    if p:name() == pname and not p:to_insert():isnil() then proc = p end
    i = i + 1
  end
  if not proc then fail("no plugin '" .. pname .. "' on track In", 4) end
elseif pname ~= "" then
  if os.getenv("ARD_STRICT") == "1" then t:set_strict_io(true) end
  local found = false -- (list_plugins() crashes before load_session)
  for p in ARDOUR.LuaAPI.list_plugins():iter() do
    if p.name == pname and p.type == ARDOUR.PluginType.VST3 then found = true end
  end
  if not found then
    for p in ARDOUR.LuaAPI.list_plugins():iter() do
      if p.type == ARDOUR.PluginType.VST3 then print("INFO available: '" .. p.name .. "'") end
    end
    fail("plugin not in Ardour's VST3 scan cache: " .. pname, 4)
  end
  proc = ARDOUR.LuaAPI.new_plugin(Session, pname, ARDOUR.PluginType.VST3, "")
  if proc:isnil() then fail("new_plugin returned nil for " .. pname, 4) end
  if t:add_processor_by_index(proc, 0, nil, true) ~= 0 then fail("add_processor_by_index failed", 5) end
end
-- Route latency is recomputed asynchronously; new track outputs are
-- auto-connected to the master bus asynchronously too.
sleep(settle)

if os.getenv("ARD_PANNER_BYPASS") == "1" then
  t:panner_shell():set_bypassed(true)
end
local master = Session:master_out()
-- Keep the master bus off the dummy's system:playback ports: connected, the
-- recorded master came out one block + 16 samples late even without a plugin.
master:output():disconnect_all(nil)

if proc then
  local pi = proc:to_insert()
  local plug = pi:plugin(0)
  -- Controls: list them, then set ARD_PARAMS by label.
  local index = {}
  for i = 0, 127 do
    local cid, r = plug:nth_parameter(i, true)
    if not r[2] then break end
    if plug:parameter_is_input(cid) and plug:parameter_is_control(cid) then
      local label = plug:parameter_label(cid)
      index[label] = i
      print(string.format("PARAM %d '%s' = %s", i, label, tostring(ARDOUR.LuaAPI.get_processor_param(proc, i, true))))
    end
  end
  for k, v in string.gmatch(os.getenv("ARD_PARAMS") or "", "([^=;]+)=([-%d.eE+]+)") do
    if index[k] == nil then fail("no control labelled '" .. k .. "'", 9) end
    local ok = ARDOUR.LuaAPI.set_processor_param(proc, index[k], tonumber(v))
    print(string.format("SETPARAM '%s'=%s ok=%s now=%s", k, v, tostring(ok),
      tostring(ARDOUR.LuaAPI.get_processor_param(proc, index[k], true))))
    if not ok then fail("set_processor_param failed", 9) end
  end
  sleep(0.5)
  print(string.format("INFO plugin inputs %d outputs %d, track inputs %d outputs %d, strict %s",
    pi:natural_input_streams():n_audio(), pi:natural_output_streams():n_audio(),
    t:n_inputs():n_audio(), t:n_outputs():n_audio(), tostring(t:strict_io())))
  -- 7.3 binds no latency getter on ARDOUR.Plugin: the insert reports the
  -- plugin's latency; effective_latency() is what Ardour compensates.
  print(string.format("LATENCY plugin_reported=%d effective=%d", pi:signal_latency(), proc:to_latent():effective_latency()))
end
print(string.format("LATENCY route_signal=%d route_playback=%d worst_route=%d preroll=%d",
  t:signal_latency(), t:playback_latency(false), Session:worst_route_latency(), Session:worst_latency_preroll()))

-- (a) Freewheel export(s) of the region's range from the master bus.
local function feed_master(first)
  t:output():disconnect_all(nil)
  for c = 0, 1 do t:output():audio(first - 1 + c):connect(master:input():audio(c):name()) end
  sleep(0.3)
end
for spec in string.gmatch(exports, "[^,]+") do
  local ename, first = string.match(spec, "^([%w_]+)@?(%d*)$")
  if not ename then fail("bad ARD_EXPORTS entry " .. spec, 2) end
  if first ~= "" then feed_master(tonumber(first)) end
  if proc and os.getenv("ARD_REACTIVATE") == "1" then
    proc:deactivate()
    sleep(0.2)
    proc:activate()
    sleep(tonumber(os.getenv("ARD_REACTIVATE_WAIT") or "1"))
  end
  local e = Session:simple_export()
  if not e:set_preset(PRESET) then fail("float32 export preset not found", 6) end
  e:set_name(ename)
  e:set_folder(outdir)
  e:set_range(rpos, rpos + rlen)
  local w0 = ARDOUR.LuaAPI.monotonic_time()
  print("INFO export " .. ename .. " starts at " .. os.date("!%H:%M:%S"))
  local ok = e:run_export()
  print(string.format("EXPORT name=%s ok=%s wall_s=%.2f file=%s/%s.wav", ename, tostring(ok),
    (ARDOUR.LuaAPI.monotonic_time() - w0) / 1e6, outdir, ename))
  print("INFO export " .. ename .. " ended at " .. os.date("!%H:%M:%S"))
  if not ok then fail("export failed", 6) end
  sleep(tonumber(os.getenv("ARD_GAP") or "0"))
end

if os.getenv("ARD_SAVE_ONLY") == "1" then
  Session:save_state("", false, false, false, false, false)
  do_rt = false
end

-- (b) Real-time roll, recorded into track "Cap".
if do_rt then
  local src = {}
  if capture == "in" then
    for c = 0, t:n_outputs():n_audio() - 1 do src[#src + 1] = t:output():audio(c):name() end
  else
    if exports:find("@") then feed_master(1) end
    for c = 0, 1 do src[#src + 1] = master:output():audio(c):name() end
  end
  local cap = Session:new_audio_track(#src, 2, nil, 1, "Cap",
    ARDOUR.PresentationInfo.max_order, ARDOUR.TrackMode.Normal, false):front()
  sleep(1.0) -- let the asynchronous auto-connect finish, then undo it
  cap:input():disconnect_all(nil)
  cap:output():disconnect_all(nil) -- no feedback into the master bus
  for c, name in ipairs(src) do cap:input():audio(c - 1):connect(name) end
  sleep(0.5)
  for c = 0, cap:n_outputs():n_audio() - 1 do
    if cap:output():audio(c):connected() then fail("Cap output still connected (feedback)", 8) end
  end
  cap:rec_enable_control():set_value(1, nogroup())
  sleep(0.5)
  Session:request_locate(rpos, false, ARDOUR.LocateTransportDisposition.MustStop, ARDOUR.TransportRequestSource.TRS_UI)
  sleep(0.5)
  Session:maybe_enable_record(false)
  local xr0 = Session:get_xrun_count()
  Session:request_roll(ARDOUR.TransportRequestSource.TRS_UI)
  local t_end, waited = rpos + rlen, 0
  while Session:transport_sample() < t_end and waited < rlen / sr * 4 + 30 do sleep(0.1); waited = waited + 0.1 end
  sleep(0.2)
  print(string.format("INFO roll reached %d of %d after %.1f s", Session:transport_sample(), t_end, waited))
  Session:request_stop(false, false, ARDOUR.TransportRequestSource.TRS_UI)
  sleep(1.0)
  Session:disable_record(false, false)
  cap:rec_enable_control():set_value(0, nogroup())
  print("INFO xruns during roll", Session:get_xrun_count() - xr0)
  if t:to_track():playlist():region_list():size() ~= 1 then fail("track In recorded during the roll", 7) end
  -- Ardour now and then ends a take with a second, empty region where the
  -- roll stopped (seen once: a 224256-sample region, then one of 0 samples
  -- starting there); it holds no audio, so it does not count.
  local n = 0
  for r in cap:to_track():playlist():region_list():iter() do
    if r:length():samples() == 0 then
      print(string.format("INFO empty captured region at %d skipped", r:start():samples()))
    else
      local ar = r:to_audioregion()
      local files = {}
      for i = 0, ar:n_channels() - 1 do files[#files + 1] = ar:source(i):to_filesource():path() end
      print(string.format("CAPTURE pos=%d start=%d len=%d files=%s", r:position():samples(),
        r:start():samples(), r:length():samples(), table.concat(files, "|")))
      n = n + 1
    end
  end
  if n ~= 1 then fail("expected one captured region, got " .. n, 7) end
end
close_session()
print("DONE")
