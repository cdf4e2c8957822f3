-- Count each decision's reward exactly once and update the statistics the policy reads.
-- The in-process reference of this arithmetic is policies/tracker.py (StatisticsTracker).
-- KEYS[1] = counters hash (mab:{name}:stats), KEYS[1 + i] = seen-marker of item i,
-- then optionally the dashboard's current series bucket (hash) as the last key
-- ARGV[1] = incarnation the decisions were made in
-- ARGV[2] = discount gamma in (0, 1]: each observation makes older ones weigh gamma x less
-- ARGV[3..5] = Page-Hinkley delta, threshold, action (flag|reset_arm|reset_all); delta "" = off
-- ARGV[6..8] = gradient step size ("" = off), momentum, baseline (1|0)
-- ARGV[9] = now (unix s), ARGV[10] = number m of serving arms, ARGV[11 .. 10 + m] = their names
-- ARGV[11 + m] = unix time the series bucket expires at, "" when there is no series key
-- then 5 ARGV per item: arm, reward, reward squared, reward on the policy scale, marker expiry
-- Returns one code per item: 1 counted, 0 duplicate, -1 stale (experiment reset since),
-- -2 experiment gone.
local stats = KEYS[1]
local current = redis.call('HGET', stats, 'incarnation')
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
local first_item = 12 + serving_count

local function num(value)
  return tonumber(value) or 0
end

local function fmt(value)
  return string.format('%.17g', value)
end

-- Discounted statistics are stored as of the step an arm last changed ("pt:"), and read as
-- value * gamma^(step - pt): one observation touches one arm, not all of them.
-- Called before the plain totals are incremented: an arm counted only by an older release
-- of this script (no "pt:") starts from its plain totals, so an upgrade forgets nothing.
local function add_discounted(arm, step, reward, square)
  local old = redis.call('HMGET', stats, 'pn:' .. arm, 'ps:' .. arm, 'pq:' .. arm, 'pt:' .. arm)
  if not old[4] then
    old = redis.call('HMGET', stats, 'n:' .. arm, 's:' .. arm, 'q:' .. arm)
    old[4] = step
  end
  local decay = gamma ^ (step - num(old[4]))
  redis.call('HSET', stats,
    'pn:' .. arm, fmt(num(old[1]) * decay + 1),
    'ps:' .. arm, fmt(num(old[2]) * decay + reward),
    'pq:' .. arm, fmt(num(old[3]) * decay + square),
    'pt:' .. arm, step)
end

local function forget(arm, step)
  redis.call('HSET', stats, 'pn:' .. arm, 0, 'ps:' .. arm, 0, 'pq:' .. arm, 0, 'pt:' .. arm, step)
end

local function reset_detector(arm)
  redis.call('HSET', stats, 'phc:' .. arm, 0, 'phm:' .. arm, 0, 'phr:' .. arm, 0, 'phf:' .. arm, 0)
end

-- Page-Hinkley on the arm's reward stream; on an alarm, count it and forget as configured.
local function detect_change(arm, step, x)
  local old = redis.call('HMGET', stats, 'phc:' .. arm, 'phm:' .. arm, 'phr:' .. arm, 'phf:' .. arm)
  local count = num(old[1]) + 1
  local mean = num(old[2]) + (x - num(old[2])) / count
  local rise = math.max(0, num(old[3]) + x - mean - ph_delta)
  local fall = math.max(0, num(old[4]) + mean - x - ph_delta)
  if rise > ph_threshold or fall > ph_threshold then
    redis.call('HINCRBY', stats, 'cd:' .. arm, 1)
    redis.call('HSET', stats, 'ct:' .. arm, now)
    reset_detector(arm)
    if ph_action == 'reset_arm' then
      forget(arm, step)
    elseif ph_action == 'reset_all' then
      for j = 1, serving_count do
        forget(serving[j], step)
        reset_detector(serving[j])
      end
    end
  else
    redis.call('HSET', stats, 'phc:' .. arm, fmt(count), 'phm:' .. arm, fmt(mean),
      'phr:' .. arm, fmt(rise), 'phf:' .. arm, fmt(fall))
  end
end

-- Gradient ascent on the preferences of the serving arms: H += step * v,
-- v = momentum * v + (x - baseline) * (onehot(arm) - softmax(H)). The preferences are read
-- once per script call and written once at its end: O(K) Redis calls per batch, not per reward.
local gradient = nil

local function load_gradient()
  local fields = {'baseline', 'bc'}
  for j = 1, serving_count do
    fields[#fields + 1] = 'h:' .. serving[j]
    fields[#fields + 1] = 'v:' .. serving[j]
  end
  local values = redis.call('HMGET', stats, unpack(fields))
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
  local fields = {'baseline', fmt(gradient.baseline), 'bc', gradient.count}
  for j = 1, serving_count do
    fields[#fields + 1] = 'h:' .. serving[j]
    fields[#fields + 1] = fmt(gradient.h[j])
    fields[#fields + 1] = 'v:' .. serving[j]
    fields[#fields + 1] = fmt(gradient.v[j])
  end
  redis.call('HSET', stats, unpack(fields))
end

local results = {}
local items = #KEYS - 1
if series then
  items = items - 1
end
for i = 1, items do
  local base = first_item + 5 * (i - 1)
  if not current then
    results[i] = -2
  elseif current ~= ARGV[1] then
    results[i] = -1
  elseif redis.call('SET', KEYS[1 + i], '1', 'NX', 'EXAT', ARGV[base + 4]) then
    local arm = ARGV[base]
    local step = redis.call('HINCRBY', stats, 'step', 1)
    local scaled = tonumber(ARGV[base + 3])
    add_discounted(arm, step, tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]))
    redis.call('HINCRBY', stats, 'n:' .. arm, 1)
    redis.call('HINCRBYFLOAT', stats, 's:' .. arm, ARGV[base + 1])
    redis.call('HINCRBYFLOAT', stats, 'q:' .. arm, ARGV[base + 2])
    if series then
      redis.call('HINCRBY', series, 'n:' .. arm, 1)
      redis.call('HINCRBYFLOAT', series, 's:' .. arm, ARGV[base + 1])
    end
    if step_size then
      gradient_step(arm, scaled)
    end
    if ph_delta then
      detect_change(arm, step, scaled)
    end
    results[i] = 1
  else
    results[i] = 0
  end
end
if gradient then
  save_gradient()
end
if series then
  redis.call('EXPIREAT', series, series_expiry)  -- a no-op when nothing was counted into it
end
return results
