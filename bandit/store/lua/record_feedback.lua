-- Count each decision's reward exactly once and update the statistics the policy reads.
-- The in-process reference of this arithmetic is policies/tracker.py (StatisticsTracker).
-- KEYS[1] = counters hash (mab:{name}:stats), then each distinct key the items' decisions are
-- marked rewarded in, once: seen-markers (string, ids with a random nonce) and issuers' bitmaps of
-- a block of sequence numbers (mab:{name}:rewarded:<issuer>:<block>), which items may share.
-- Then optionally the dashboard's current series bucket (hash) as the last key
-- ARGV[1] = incarnation the decisions were made in
-- ARGV[2] = discount gamma in (0, 1]: each observation makes older ones weigh gamma x less
-- ARGV[3..5] = Page-Hinkley delta, threshold, action (flag|reset_arm|reset_all); delta "" = off
-- ARGV[6..8] = gradient step size ("" = off), momentum, baseline (1|0)
-- ARGV[9] = now (unix s), ARGV[10] = number m of serving arms, ARGV[11 .. 10 + m] = their names
-- ARGV[11 + m] = unix time the series bucket expires at, "" when there is no series key
-- ARGV[13 + m] (optional, conversion mode) = one JSON array of each item's conversion-delay
-- bucket (-1: none): a counted conversion adds 1 to `dl:<bucket>` (pending_conversions.py)
-- ARGV[12 + m] = the items, one JSON array [arms, fields]: `arms` the names of the batch's arms,
-- `fields` 6 numbers per item: its arm (index into arms, from 1), reward, reward on the policy
-- scale, the unix time the decision's feedback window ends (marker expiry), the KEYS index of
-- where it is marked, and its bit in that bitmap (-1: the key is a seen-marker of its own).
-- A bitmap expires as a whole at the latest window end of the decisions written into it.
-- Returns -2 when the experiment is gone, -1 when it was reset since (stale: every item), else a
-- string of one character per item: "1" counted, "0" duplicate.
--
-- Each arm's state is read once per call (one HMGET), updated in locals item by item in the
-- order given, and written once at the end; per item Redis sees only its mark (one BITFIELD per
-- bitmap for all of its items, SET NX for a seen-marker).
local stats = KEYS[1]
local head = redis.call('HMGET', stats, 'incarnation', 'step')
local current = head[1]
if not current then
  return -2
elseif current ~= ARGV[1] then
  return -1
end
local gamma = tonumber(ARGV[2])
local ph_delta, ph_threshold, ph_action = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local step_size, momentum, use_baseline = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8] == '1'
local now = ARGV[9]
local serving = {}
local serving_count = tonumber(ARGV[10])
for j = 1, serving_count do
  serving[j] = ARGV[10 + j]
end
local series_expiry = ARGV[11 + serving_count]
local series = nil
if series_expiry ~= '' then
  series = KEYS[#KEYS]
end
local payload = cjson.decode(ARGV[12 + serving_count])
local arm_names, fields = payload[1], payload[2]
local items = #fields / 6

local function num(value)
  return tonumber(value) or 0
end

local function fmt(value)
  return string.format('%.17g', value)
end

-- Mark every item first: SET NX EXAT per seen-marker, one BITFIELD per bitmap whose SETs run in
-- item order, so a decision twice in the batch is counted at its first place only.
local fresh = {}
local bitmaps, bitmap_items, bitmap_expiry = {}, {}, {}
for i = 1, items do
  local base = 6 * (i - 1)
  local key_index, offset, expiry = fields[base + 5], fields[base + 6], fields[base + 4]
  if offset < 0 then
    fresh[i] = redis.call('SET', KEYS[key_index], '1', 'NX', 'EXAT', expiry) ~= false
  else
    local positions = bitmap_items[key_index]
    if not positions then
      positions = {}
      bitmap_items[key_index] = positions
      bitmaps[#bitmaps + 1] = key_index
      bitmap_expiry[key_index] = expiry
    elseif expiry > bitmap_expiry[key_index] then
      bitmap_expiry[key_index] = expiry
    end
    positions[#positions + 1] = i
  end
end
-- At most this many SETs per BITFIELD, so its arguments fit on Lua's stack.
local SETS_PER_CALL = 1000
for _, key_index in ipairs(bitmaps) do
  local positions = bitmap_items[key_index]
  for first = 1, #positions, SETS_PER_CALL do
    local last = math.min(first + SETS_PER_CALL - 1, #positions)
    local command, c = {}, 0
    for p = first, last do
      -- The value as a string: Redis would format a Lua number anew for every SET.
      command[c + 1], command[c + 2], command[c + 3], command[c + 4] = 'SET', 'u1', fields[6 * positions[p]], '1'
      c = c + 4
    end
    local old = redis.call('BITFIELD', KEYS[key_index], unpack(command))
    for p = first, last do
      fresh[positions[p]] = old[p - first + 1] == 0
    end
  end
end

-- Conversion delays of the items counted, for the exposure of pending decisions.
local delay_argument = ARGV[13 + serving_count]
if delay_argument then
  local delays, per_bucket, buckets = cjson.decode(delay_argument), {}, {}
  for i = 1, items do
    local bucket = delays[i]
    if fresh[i] and bucket >= 0 then
      if not per_bucket[bucket] then
        per_bucket[bucket] = 0
        buckets[#buckets + 1] = bucket
      end
      per_bucket[bucket] = per_bucket[bucket] + 1
    end
  end
  for _, bucket in ipairs(buckets) do
    redis.call('HINCRBY', stats, 'dl:' .. string.format('%d', bucket), per_bucket[bucket])
  end
end

-- Each arm's state, read on first use: discounted statistics (as of its step "pt:"), the plain
-- totals as they were before this call, Page-Hinkley's statistics, and what this call adds.
local arms = {}
local touched = {}

local function arm_state(arm)
  local state = arms[arm]
  if state then
    return state
  end
  local v = redis.call('HMGET', stats, 'pn:' .. arm, 'ps:' .. arm, 'pq:' .. arm, 'pt:' .. arm,
    'n:' .. arm, 's:' .. arm, 'q:' .. arm, 'phc:' .. arm, 'phm:' .. arm, 'phr:' .. arm, 'phf:' .. arm)
  state = {
    pn = num(v[1]), ps = num(v[2]), pq = num(v[3]), pt = num(v[4]), stepped = v[4] ~= false,
    n = num(v[5]), s = num(v[6]), q = num(v[7]),
    phc = num(v[8]), phm = num(v[9]), phr = num(v[10]), phf = num(v[11]),
    counted = 0, sum = 0, squares = 0, changes = 0, policy_dirty = false, detector_dirty = false,
  }
  arms[arm] = state
  touched[#touched + 1] = arm
  return state
end

-- Discounted statistics are stored as of the step an arm last changed ("pt:"), and read as
-- value * gamma^(step - pt): one observation touches one arm, not all of them.
-- An arm counted only by an older release of this script (no "pt:") starts from its plain
-- totals as they were before this call, so an upgrade forgets nothing.
local function add_discounted(state, step, reward, square)
  if not state.stepped then
    state.pn, state.ps, state.pq, state.pt, state.stepped = state.n, state.s, state.q, step, true
  end
  local decay = gamma ^ (step - state.pt)
  state.pn = state.pn * decay + 1
  state.ps = state.ps * decay + reward
  state.pq = state.pq * decay + square
  state.pt = step
  state.policy_dirty = true
end

local function forget(state, step)
  state.pn, state.ps, state.pq, state.pt, state.stepped, state.policy_dirty = 0, 0, 0, step, true, true
end

local function reset_detector(state)
  state.phc, state.phm, state.phr, state.phf, state.detector_dirty = 0, 0, 0, 0, true
end

-- Page-Hinkley on the arm's reward stream; on an alarm, count it and forget as configured.
local function detect_change(state, step, x)
  local count = state.phc + 1
  local mean = state.phm + (x - state.phm) / count
  local rise = math.max(0, state.phr + x - mean - ph_delta)
  local fall = math.max(0, state.phf + mean - x - ph_delta)
  if rise > ph_threshold or fall > ph_threshold then
    state.changes = state.changes + 1
    reset_detector(state)
    if ph_action == 'reset_arm' then
      forget(state, step)
    elseif ph_action == 'reset_all' then
      for j = 1, serving_count do
        local other = arm_state(serving[j])
        forget(other, step)
        reset_detector(other)
      end
    end
  else
    state.phc, state.phm, state.phr, state.phf, state.detector_dirty = count, mean, rise, fall, true
  end
end

-- Gradient ascent on the preferences of the serving arms: H += step * v,
-- v = momentum * v + (x - baseline) * (onehot(arm) - softmax(H)). The preferences are read
-- once per script call and written once at its end: O(K) Redis calls per batch, not per reward.
local gradient = nil

local function load_gradient()
  local names = {'baseline', 'bc'}
  for j = 1, serving_count do
    names[#names + 1] = 'h:' .. serving[j]
    names[#names + 1] = 'v:' .. serving[j]
  end
  local values = redis.call('HMGET', stats, unpack(names))
  local state = {baseline = num(values[1]), count = num(values[2]), h = {}, v = {}}
  for j = 1, serving_count do
    state.h[j], state.v[j] = num(values[1 + 2 * j]), num(values[2 + 2 * j])
  end
  return state
end

local function gradient_step(arm, x)
  gradient = gradient or load_gradient()
  local advantage = x - (use_baseline and gradient.baseline or 0)
  local top, observed = -math.huge, false
  for j = 1, serving_count do
    top = math.max(top, gradient.h[j])
    observed = observed or serving[j] == arm
  end
  if observed then
    local total = 0
    for j = 1, serving_count do
      total = total + math.exp(gradient.h[j] - top)
    end
    local probabilities = {}
    for j = 1, serving_count do
      probabilities[j] = math.exp(gradient.h[j] - top) / total
    end
    for j = 1, serving_count do
      local g = -probabilities[j] * advantage
      if serving[j] == arm then
        g = g + advantage
      end
      gradient.v[j] = momentum * gradient.v[j] + g
      gradient.h[j] = gradient.h[j] + step_size * gradient.v[j]
    end
  end
  -- The baseline is the mean of the rewards the gradient policy has seen, with its own count.
  gradient.count = gradient.count + 1
  gradient.baseline = gradient.baseline + (x - gradient.baseline) / gradient.count
end

local function save_gradient()
  local values = {'baseline', fmt(gradient.baseline), 'bc', gradient.count}
  for j = 1, serving_count do
    values[#values + 1] = 'h:' .. serving[j]
    values[#values + 1] = fmt(gradient.h[j])
    values[#values + 1] = 'v:' .. serving[j]
    values[#values + 1] = fmt(gradient.v[j])
  end
  redis.call('HSET', stats, unpack(values))
end

local step = num(head[2])
local first_step = step
local results = {}
for i = 1, items do
  if fresh[i] then
    local base = 6 * (i - 1)
    local arm = arm_names[fields[base + 1]]
    local reward, scaled = fields[base + 2], fields[base + 3]
    local square = reward * reward
    local state = arm_state(arm)
    step = step + 1
    add_discounted(state, step, reward, square)
    state.counted = state.counted + 1
    state.sum = state.sum + reward
    state.squares = state.squares + square
    if step_size then
      gradient_step(arm, scaled)
    end
    if ph_delta then
      detect_change(state, step, scaled)
    end
    results[i] = '1'
  else
    results[i] = '0'
  end
end

-- Write what changed, once per arm.
if step ~= first_step then
  redis.call('HSET', stats, 'step', string.format('%d', step))
end
for _, arm in ipairs(touched) do
  local state = arms[arm]
  if state.counted > 0 then
    redis.call('HINCRBY', stats, 'n:' .. arm, state.counted)
    redis.call('HINCRBYFLOAT', stats, 's:' .. arm, fmt(state.sum))
    redis.call('HINCRBYFLOAT', stats, 'q:' .. arm, fmt(state.squares))
    if series then
      redis.call('HINCRBY', series, 'n:' .. arm, state.counted)
      redis.call('HINCRBYFLOAT', series, 's:' .. arm, fmt(state.sum))
    end
  end
  if state.policy_dirty then
    redis.call('HSET', stats, 'pn:' .. arm, fmt(state.pn), 'ps:' .. arm, fmt(state.ps),
      'pq:' .. arm, fmt(state.pq), 'pt:' .. arm, string.format('%d', state.pt))
  end
  if state.detector_dirty then
    redis.call('HSET', stats, 'phc:' .. arm, fmt(state.phc), 'phm:' .. arm, fmt(state.phm),
      'phr:' .. arm, fmt(state.phr), 'phf:' .. arm, fmt(state.phf))
  end
  if state.changes > 0 then
    redis.call('HINCRBY', stats, 'cd:' .. arm, state.changes)
    redis.call('HSET', stats, 'ct:' .. arm, now)
  end
end
if gradient then
  save_gradient()
end
-- Each bitmap lives until the latest window end written into it: EXPIRETIME is -1 for a key
-- just created by BITFIELD (no TTL yet), so that is set here too; an expiry only moves later.
for _, key_index in ipairs(bitmaps) do
  local key = KEYS[key_index]
  if redis.call('EXPIRETIME', key) < bitmap_expiry[key_index] then
    redis.call('EXPIREAT', key, string.format('%d', bitmap_expiry[key_index]))
  end
end
if series then
  redis.call('EXPIREAT', series, series_expiry)  -- a no-op when nothing was counted into it
end
return table.concat(results)
