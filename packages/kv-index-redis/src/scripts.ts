/**
 * The Lua scripts behind every write and every lookup: each operation is one EVALSHA, so it is
 * atomic (replicas sharing the server never see half an add) and costs one round trip.
 *
 * Keys (P = the configured prefix, "" by default):
 *   P<key>                 HASH   llm-d's: field = PodEntry JSON, value ""
 *   Pengine:<key>          ZSET   llm-d's: member = decimal request key, score = position
 *   Pkvix:pod:<pod>        HASH   field = decimal request key, value = that pod's lines under it,
 *                                 "\n"-joined: `<field>` for a real entry, `<field>\t<inserted ms>\t<expires ms>`
 *                                 for a speculative one (what clear(pod), confirmation and expiry read)
 *   Pkvix:exp:<bucket>     HASH   field = `<key>\n<field>`, value = pod: speculative entries expiring in
 *                                 [bucket·B, (bucket+1)·B) ms (B = BUCKET_MS)
 *   Pkvix:stats            HASH   counters (entries, keys, mappings, speculative, confirmed, expired,
 *                                 e:<pod>, s:<pod>) and the sweep position (swept, maxbucket)
 *
 * Every kvix key is a HASH whose field names are not JSON objects: llm-d's Clear walks the whole
 * keyspace and HKEYS every key outside `engine:`, so any other type there would fail it with
 * WRONGTYPE, and a field that decoded as a PodEntry could be mistaken for one.
 *
 * Time is the Redis server's (TIME), so replicas with skewed clocks agree on every expiry.
 */

/** Width of a speculative-expiry bucket: entries expire at most this late. */
export const BUCKET_MS = 100;
/** Buckets one call sweeps at most (the rest go to the next call). */
const MAX_BUCKETS_PER_SWEEP = 600;

const PRELUDE = `
local BUCKET = ${BUCKET_MS}
local P = ARGV[1]
local STATS = P .. 'kvix:stats'
local t = redis.call('TIME')
local NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local delta = {}
local function bump(name, n) delta[name] = (delta[name] or 0) + n end
local function fmt(n) return string.format('%.0f', n) end

local function lines_of(s)
  local out = {}
  if s then for line in string.gmatch(s, '[^\\n]+') do out[#out + 1] = line end end
  return out
end
-- A line's field, and its speculative times (nil for a real entry).
local function parse_line(line)
  local tab = string.find(line, '\\t', 1, true)
  if not tab then return line, nil, nil end
  local ins, exp = string.match(line, '\\t(%d+)\\t(%d+)$')
  return string.sub(line, 1, tab - 1), tonumber(ins), tonumber(exp)
end
local function store_lines(ph, k, lines)
  if #lines == 0 then redis.call('HDEL', ph, k) else redis.call('HSET', ph, k, table.concat(lines, '\\n')) end
end
local function pod_hash(pod) return P .. 'kvix:pod:' .. pod end

-- Removes field from a request key's hash; keeps the key count (an emptied hash is deleted by Redis).
local function hdel_field(k, field)
  local hk = P .. k
  local n = redis.call('HDEL', hk, field)
  if n == 1 and redis.call('EXISTS', hk) == 0 then bump('keys', -1) end
  return n
end

local sweep_state = redis.call('HMGET', STATS, 'swept', 'maxbucket')
local SWEPT = tonumber(sweep_state[1])
local MAXB = tonumber(sweep_state[2])
local NOWB = math.floor(NOW / BUCKET)
if SWEPT == nil then
  SWEPT = NOWB - 1
  redis.call('HSET', STATS, 'swept', fmt(SWEPT))
end
local MAXB0 = MAXB

local function enqueue(k, field, pod, expires)
  local b = math.floor(expires / BUCKET)
  -- A bucket at or before the sweep position would never be swept.
  if b <= SWEPT then b = SWEPT + 1 end
  redis.call('HSET', P .. 'kvix:exp:' .. fmt(b), k .. '\\n' .. field, pod)
  if MAXB == nil or b > MAXB then MAXB = b end
end

-- Drops the speculative entries of every bucket that ended before now (unless extended since).
local expired_by_pod = {}
local function sweep()
  if SWEPT >= NOWB - 1 then return end
  local target = NOWB - 1
  -- Buckets past the last one ever filled are empty: no need to visit them.
  if MAXB == nil then target = SWEPT elseif MAXB < target then target = MAXB end
  local last = math.min(target, SWEPT + ${MAX_BUCKETS_PER_SWEEP})
  for b = SWEPT + 1, last do
    local bk = P .. 'kvix:exp:' .. fmt(b)
    local kv = redis.call('HGETALL', bk)
    for i = 1, #kv, 2 do
      local member, pod = kv[i], kv[i + 1]
      local nl = string.find(member, '\\n', 1, true)
      local k, field = string.sub(member, 1, nl - 1), string.sub(member, nl + 1)
      local ph = pod_hash(pod)
      local lines = lines_of(redis.call('HGET', ph, k))
      for li = 1, #lines do
        local f, _, exp = parse_line(lines[li])
        if f == field then
          if exp ~= nil and exp <= NOW then
            table.remove(lines, li)
            store_lines(ph, k, lines)
            hdel_field(k, field)
            bump('entries', -1); bump('speculative', -1); bump('expired', 1)
            bump('e:' .. pod, -1); bump('s:' .. pod, -1)
            expired_by_pod[pod] = (expired_by_pod[pod] or 0) + 1
          end
          break
        end
      end
    end
    redis.call('DEL', bk)
  end
  -- Past the last bucket ever filled, nothing is left to sweep up to now.
  if last == target then SWEPT = NOWB - 1 else SWEPT = last end
  redis.call('HSET', STATS, 'swept', fmt(SWEPT))
end

-- Applies the counter deltas; per-pod counters that reach 0 are removed.
local function flush()
  if MAXB ~= MAXB0 then redis.call('HSET', STATS, 'maxbucket', fmt(MAXB)) end
  for name, n in pairs(delta) do
    if n ~= 0 then
      local v = redis.call('HINCRBY', STATS, name, n)
      if v <= 0 and (string.sub(name, 1, 2) == 'e:' or string.sub(name, 1, 2) == 's:') then redis.call('HDEL', STATS, name) end
    end
  end
  local parts = {}
  for pod, n in pairs(expired_by_pod) do parts[#parts + 1] = pod .. '\\t' .. n end
  return table.concat(parts, '\\n')
end
`;

/**
 * ARGV: prefix, ttlMs, entry count E, E × (field, pod, speculative 0/1, owner suffix, tier marker), request key
 * count R, R decimal keys, engine key count M, M × (engine key, n, n request keys).
 * Returns {expired, admitted, confirmations ("pod\tlatencyMs" lines)}.
 */
export const ADD_SCRIPT = `${PRELUDE}
sweep()
local ttl = tonumber(ARGV[2])
local ne = tonumber(ARGV[3])
local ents = {}
local p = 4
for j = 1, ne do
  ents[j] = { field = ARGV[p], pod = ARGV[p + 1], spec = ARGV[p + 2] == '1', owner = ARGV[p + 3], tier = ARGV[p + 4] }
  p = p + 5
end
local nr = tonumber(ARGV[p]); p = p + 1
local NOGROUP = '"HasGroup":false,"GroupIdx":0}'
local admitted = 0
local confirmations = {}
for i = 0, nr - 1 do
  local k = ARGV[p + i]
  local hk = P .. k
  for j = 1, ne do
    local e = ents[j]
    local ph = pod_hash(e.pod)
    local lines = lines_of(redis.call('HGET', ph, k))
    local same, real_owner, spec_owners = nil, false, {}
    for li = 1, #lines do
      local f, ins = parse_line(lines[li])
      if f == e.field then
        same = li
      elseif string.find(f, e.tier, 1, true) == nil then
        -- Another tier of the pod: a speculation stands beside it, and only its own tier confirms it.
      elseif ins ~= nil then
        -- A routing decision knows no KV-cache group while engines report one (vLLM: group 0):
        -- a group-less speculation is confirmed by the pod's entry in any group.
        if string.sub(f, -#e.owner) == e.owner or string.sub(f, -#NOGROUP) == NOGROUP then spec_owners[#spec_owners + 1] = li end
      elseif e.owner == NOGROUP or string.sub(f, -#e.owner) == e.owner then
        real_owner = true
      end
    end
    if same ~= nil then
      if e.spec then
        -- A repeated routing decision extends the speculation's life; a shorter TTL does not cut
        -- short the earlier decision's.
        local _, ins, exp = parse_line(lines[same])
        local expires = NOW + ttl
        if exp == nil or expires > exp then
          lines[same] = e.field .. '\\t' .. fmt(ins or NOW) .. '\\t' .. fmt(expires)
          store_lines(ph, k, lines)
          enqueue(k, e.field, e.pod, expires)
        end
      end
      -- Tracked but missing from the key (another writer removed it): put it back.
      if redis.call('HSET', hk, e.field, '') == 1 and redis.call('HLEN', hk) == 1 then bump('keys', 1) end
    elseif not (e.spec and real_owner) then
      if redis.call('HSET', hk, e.field, '') == 1 and redis.call('HLEN', hk) == 1 then bump('keys', 1) end
      if e.spec then
        local expires = NOW + ttl
        lines[#lines + 1] = e.field .. '\\t' .. fmt(NOW) .. '\\t' .. fmt(expires)
        enqueue(k, e.field, e.pod, expires)
        bump('speculative', 1); bump('s:' .. e.pod, 1)
      else
        lines[#lines + 1] = e.field
      end
      bump('entries', 1); bump('e:' .. e.pod, 1)
      admitted = admitted + 1
      if not e.spec then
        -- The engine confirmed the routing decisions: the real entry replaces every speculative one
        -- it stands for (a group-less decision and one naming this group may both wait for it).
        -- Highest line first, so the lower line numbers stay valid.
        for x = #spec_owners, 1, -1 do
          local f, ins = parse_line(lines[spec_owners[x]])
          table.remove(lines, spec_owners[x])
          redis.call('HDEL', hk, f)
          bump('entries', -1); bump('speculative', -1); bump('confirmed', 1)
          bump('e:' .. e.pod, -1); bump('s:' .. e.pod, -1)
          confirmations[#confirmations + 1] = e.pod .. '\\t' .. fmt(NOW - ins)
        end
      end
      store_lines(ph, k, lines)
    end
  end
end
p = p + nr
local nm = tonumber(ARGV[p]); p = p + 1
for m = 1, nm do
  local ek = P .. 'engine:' .. ARGV[p]
  local n = tonumber(ARGV[p + 1])
  -- The latest announcement wins, as in the in-memory map; members and scores are llm-d's.
  if redis.call('DEL', ek) == 0 then bump('mappings', 1) end
  local args = {}
  for i = 0, n - 1 do
    args[#args + 1] = i
    args[#args + 1] = ARGV[p + 2 + i]
  end
  redis.call('ZADD', ek, unpack(args))
  p = p + 2 + n
end
local expired = flush()
return { expired, admitted, table.concat(confirmations, '\\n') }
`;

/**
 * ARGV: prefix, kind (engine|request), key, entry count E, E × (field, pod).
 * Returns {expired, removed}.
 */
export const EVICT_SCRIPT = `${PRELUDE}
sweep()
local kind, key = ARGV[2], ARGV[3]
local ne = tonumber(ARGV[4])
local targets
local ek = P .. 'engine:' .. key
if kind == 'engine' then
  targets = redis.call('ZRANGE', ek, 0, -1)
  if #targets == 0 then return { flush(), 0 } end
else
  targets = { key }
end
local removed = 0
for _, k in ipairs(targets) do
  for j = 0, ne - 1 do
    local field, pod = ARGV[5 + 2 * j], ARGV[6 + 2 * j]
    local hit = hdel_field(k, field) == 1
    local ph = pod_hash(pod)
    local lines = lines_of(redis.call('HGET', ph, k))
    for li = 1, #lines do
      local f, ins = parse_line(lines[li])
      if f == field then
        table.remove(lines, li)
        store_lines(ph, k, lines)
        bump('entries', -1); bump('e:' .. pod, -1)
        if ins ~= nil then bump('speculative', -1); bump('s:' .. pod, -1) end
        hit = true
        break
      end
    end
    if hit then removed = removed + 1 end
  end
end
if kind == 'engine' then
  -- The mapping goes only once nothing it maps to is held by anyone (llm-d's rule too).
  local held = false
  for _, k in ipairs(targets) do
    if redis.call('EXISTS', P .. k) == 1 then held = true; break end
  end
  if not held then
    redis.call('DEL', ek)
    bump('mappings', -1)
  end
end
return { flush(), removed }
`;

/**
 * KEYS: the prompt's request keys (prefixed), in order. ARGV: prefix, earlyStop 0/1, filtered 0/1,
 * candidate pods. Returns {expired, keyCount, packed, field…}: `packed` holds, per key, a 16-bit
 * count and that many 16-bit indexes into the fields that follow (each distinct field once).
 */
export const LOOKUP_SCRIPT = `${PRELUDE}
sweep()
local early = ARGV[2] == '1'
local filter = nil
if ARGV[3] == '1' then
  filter = {}
  for i = 4, #ARGV do filter[ARGV[i]] = true end
end
local dict, index_of, pod_of = {}, {}, {}
local pod_ids, run, npods = {}, {}, 0
-- Big-endian 16-bit counts and indexes as bytes, made one string at the end (string.char over
-- thousands of bytes at a time, not per entry): Lua's per-call cost dominates otherwise.
local bytes = {}
local nb = 0
local floor = math.floor
local key_count = #KEYS
for i = 1, #KEYS do
  local fields = redis.call('HKEYS', KEYS[i])
  local count_at = nb + 1
  nb = nb + 2
  local count, advanced = 0, 0
  for j = 1, #fields do
    local f = fields[j]
    local idx = index_of[f]
    if idx == nil then
      idx = 0
      local ok, e = pcall(cjson.decode, f)
      if ok and type(e) == 'table' and type(e.PodIdentifier) == 'string' and e.PodIdentifier ~= '' and #dict < 65535 then
        local pod = e.PodIdentifier
        if filter == nil or filter[pod] then
          dict[#dict + 1] = f
          idx = #dict
          local id = pod_ids[pod]
          if id == nil then
            npods = npods + 1
            id = npods
            pod_ids[pod] = id
            run[id] = 0
          end
          pod_of[idx] = id
        end
      end
      index_of[f] = idx
    end
    if idx > 0 then
      count = count + 1
      bytes[nb + 1] = floor(idx / 256)
      bytes[nb + 2] = idx % 256
      nb = nb + 2
      local id = pod_of[idx]
      if run[id] == i - 1 then
        run[id] = i
        advanced = advanced + 1
      end
    end
  end
  if early and advanced == 0 then
    -- Nobody holds keys 1..i: nothing after this key can lengthen a prefix run.
    key_count = i - 1
    nb = count_at - 1
    break
  end
  bytes[count_at] = floor(count / 256)
  bytes[count_at + 1] = count % 256
end
local chunks = {}
for from = 1, nb, 4096 do chunks[#chunks + 1] = string.char(unpack(bytes, from, math.min(nb, from + 4095))) end
local result = { flush(), key_count, table.concat(chunks) }
for _, f in ipairs(dict) do result[#result + 1] = f end
return result
`;

/**
 * One bounded step of clear(pod): up to ARGV[4] of the pod's keys from HSCAN cursor ARGV[3].
 * ARGV: prefix, pod, cursor, count. Returns {expired, next cursor, removed}.
 */
export const CLEAR_SCRIPT = `${PRELUDE}
sweep()
local pod = ARGV[2]
local ph = pod_hash(pod)
local res = redis.call('HSCAN', ph, ARGV[3], 'COUNT', tonumber(ARGV[4]))
local kv = res[2]
local removed, spec_removed = 0, 0
for i = 1, #kv, 2 do
  local k = kv[i]
  for _, line in ipairs(lines_of(kv[i + 1])) do
    local f, ins = parse_line(line)
    hdel_field(k, f)
    removed = removed + 1
    if ins ~= nil then spec_removed = spec_removed + 1 end
  end
  redis.call('HDEL', ph, k)
end
bump('entries', -removed); bump('e:' .. pod, -removed)
bump('speculative', -spec_removed); bump('s:' .. pod, -spec_removed)
return { flush(), res[1], removed }
`;

/**
 * One bounded step of clearing what another writer (a Go llm-d EPP sharing the database) put under
 * a pod: SCAN of the keyspace from cursor ARGV[3], COUNT ARGV[4], HASH keys only, skipping
 * engine: and kvix: keys; per key, the fields of the pod (matched by their JSON prefix, which Go's
 * encoding and kvix's share byte for byte) that kvix's own index of the pod does not list (those
 * are kvix's: its own clear removed them, or they were written after it) are deleted, as llm-d's
 * Clear does. O(keyspace): the price of clearing entries kvix never tracked.
 * ARGV: prefix, pod, cursor, count, field prefix. Returns {expired, next cursor, removed}.
 */
export const CLEAR_FOREIGN_SCRIPT = `${PRELUDE}
sweep()
local pod, fp = ARGV[2], ARGV[5]
local ph = pod_hash(pod)
local res = redis.call('SCAN', ARGV[3], 'MATCH', P .. '*', 'COUNT', tonumber(ARGV[4]), 'TYPE', 'hash')
local removed = 0
local plen = #P
for _, hk in ipairs(res[2]) do
  local k = string.sub(hk, plen + 1)
  if string.sub(k, 1, 7) ~= 'engine:' and string.sub(k, 1, 5) ~= 'kvix:' then
    local mine = nil
    for _, f in ipairs(redis.call('HKEYS', hk)) do
      if string.sub(f, 1, #fp) == fp then
        if mine == nil then
          mine = {}
          for _, line in ipairs(lines_of(redis.call('HGET', ph, k))) do mine[(parse_line(line))] = true end
        end
        if not mine[f] then
          redis.call('HDEL', hk, f)
          removed = removed + 1
        end
      end
    end
  end
end
return { flush(), res[1], removed }
`;

/**
 * One bounded step of reconciling a pod's counters with what the shared database really holds:
 * another writer (llm-d's Evict and Clear) may have deleted fields kvix's index of the pod still
 * lists. Up to ARGV[4] of the pod's keys from HSCAN cursor ARGV[3]: each line whose field is gone
 * from its request key is dropped, with the counters it was counted in.
 * ARGV: prefix, pod, cursor, count. Returns {expired, next cursor, lines dropped, lines checked}.
 */
export const RECONCILE_SCRIPT = `${PRELUDE}
sweep()
local pod = ARGV[2]
local ph = pod_hash(pod)
local res = redis.call('HSCAN', ph, ARGV[3], 'COUNT', tonumber(ARGV[4]))
local kv = res[2]
local dropped, checked = 0, 0
for i = 1, #kv, 2 do
  local k = kv[i]
  local keep = {}
  local lines = lines_of(kv[i + 1])
  for _, line in ipairs(lines) do
    checked = checked + 1
    local f, ins = parse_line(line)
    if redis.call('HEXISTS', P .. k, f) == 1 then
      keep[#keep + 1] = line
    else
      dropped = dropped + 1
      bump('entries', -1); bump('e:' .. pod, -1)
      if ins ~= nil then bump('speculative', -1); bump('s:' .. pod, -1) end
    end
  end
  if #keep ~= #lines then store_lines(ph, k, keep) end
end
return { flush(), res[1], dropped, checked }
`;

/** ARGV: prefix. Returns {expired, counters as a flat field/value list}. */
export const STATS_SCRIPT = `${PRELUDE}
sweep()
local expired = flush()
return { expired, redis.call('HGETALL', STATS) }
`;

/** ARGV: prefix, a fresh epoch (kept if the stats hash has none). Returns {expired, epoch}. */
export const SWEEP_SCRIPT = `${PRELUDE}
sweep()
redis.call('HSETNX', STATS, 'epoch', ARGV[2])
return { flush(), redis.call('HGET', STATS, 'epoch') }
`;

export const SCRIPTS = {
  add: ADD_SCRIPT,
  evict: EVICT_SCRIPT,
  lookup: LOOKUP_SCRIPT,
  clear: CLEAR_SCRIPT,
  stats: STATS_SCRIPT,
  sweep: SWEEP_SCRIPT,
  clear_foreign: CLEAR_FOREIGN_SCRIPT,
  reconcile: RECONCILE_SCRIPT,
} as const;

export type ScriptName = keyof typeof SCRIPTS;
