"""The word index of the lists' free text (``q``), maintained on write (part of the data
layer, DESIGN §2.4).

``q`` matches a run whose key, sweep name or notes contain it, case-insensitively (a substring
of ``casefold(key + "\\n" + sweep name + "\\n" + notes)``, the run's *search text*; a sweep's is
its name and notes). The index answers that exactly, without reading the items (each list has
its own, under its prefix: :mod:`backend.store.index`, :mod:`backend.store.sweepindex`):

* a run's search text is split into **words**: maximal runs of the bytes ``0-9 A-Z a-z _`` and
  of every non-ASCII byte (so a word never splits a UTF-8 character); each word has a set
  ``word:{w}`` of the runs using it, scored by ``seq`` like the other filter sets of
  :mod:`backend.store.index`;
* the **vocabulary** ``words`` counts the runs of each word; every suffix of a word of at most
  :data:`SUFFIX_MAX` bytes is in the lexical set ``wordsfx`` (member ``suffix NUL word``), so
  the words *containing* a token are one ZRANGEBYLEX away; longer words (rare: hashes, URLs)
  are listed in ``wordlong`` and searched one by one.

A ``q`` made of word bytes only is contained in the text exactly when it is contained in one of
its words: the runs are the union of the sets of the words containing it, with no run read.

Two words next to each other make a **pair** ``w1 s w2`` (``s`` the separator between them, at
most :data:`SEP_MAX` bytes; both words at most :data:`SUFFIX_MAX` bytes), indexed like a word:
a set ``word:{w1 s w2}`` of the runs holding it, counted in ``words``, and every suffix ``u`` of
``w1`` in the lexical set ``wordpair`` (member ``u s w2 NUL head``, ``w1 = head u``). A ``q`` of
two tokens around one separator (``"s0.9"``, ``"digits-mlp"``, ``"note 1"``) is contained in
the text exactly when a pair ends its first word with the first token, has the separator, and
starts its second word with the second token: the members of ``wordpair`` that start with
``q``, so again a union of sets, with no run read (when a word longer than :data:`SUFFIX_MAX`
ends with the first token or starts with the second, such a ``q`` is answered as below).

Any other ``q`` with non-word bytes (``"-seed1"`` has a leading separator, ``"tscnc-s0.9"``
three tokens) is split into its tokens. Two neighbouring tokens with a short separator between
them stand for the pairs that hold them, as above (a ``q`` of three tokens gives two pairs: a
match must hold both); any other token stands for the words holding it where ``q`` puts it: a
token between two separators is a whole word, one after a separator starts a word, one before a
separator ends a word (the suffix set gives the words ending with a token as ``token NUL
word``). The runs holding a pair or word for every one of these are intersected, then each
candidate's indexed text is checked for the whole ``q`` (Lua, byte-exact; a run may hold both
pairs of ``"tscnc-s0.9"`` apart): this costs one hash read per candidate, and the pairs keep the
candidates close to the matches. A ``q`` without any word byte (``"-"``) is checked over the
newest :data:`SCAN_LIMIT` runs only.

Maintenance: a write that sets a run's search text (creation, a notes edit, ``tscnc reindex``)
stores it casefolded in the field ``ftext`` (Lua cannot casefold); :data:`LUA_WORDS`'s
``tscnc_words_sync``, called by :data:`backend.store.index.LUA_REINDEX` in the same script,
moves it to ``itext`` and updates the word and pair sets by the difference. Deletion removes the
run from the sets of the words and pairs of its ``itext``.
"""

from __future__ import annotations

import re
from itertools import pairwise

# Words up to this many bytes have their suffixes indexed; longer ones are scanned.
SUFFIX_MAX = 32
# Two words with a separator of at most this many bytes between them are indexed as a pair.
SEP_MAX = 4
# A q without any word byte is checked over the newest SCAN_LIMIT runs.
SCAN_LIMIT = 10_000

_WORD = re.compile(rb"[0-9A-Za-z_\x80-\xff]+")


def search_text(*parts: str) -> str:
    """The text ``q`` is searched in (casefolded), as stored in a hash's ``ftext``: a run's
    key, sweep name and notes, a sweep's name and notes, one per line."""
    return "\n".join(parts).casefold()


def query_tokens(q: str) -> tuple[bytes, list[bytes], bool]:
    """(casefolded q, its distinct tokens, whether candidates must be checked for all of q).

    Each token is prefixed by where a word of a match holds it: ``a`` anywhere (q is one
    token), ``s`` at its start (q has a separator before the token), ``e`` at its end (a
    separator after), ``x`` as the whole word (both); or ``p``: two neighbouring tokens of q
    with their separator of at most :data:`SEP_MAX` bytes, answered from the pairs (the script
    falls back to the tokens ``e`` and ``s`` when a long word may hold one). Only a q of
    exactly two such tokens needs no check.

    >>> query_tokens("S0.9")
    (b's0.9', [b'ps0.9'], False)
    >>> query_tokens("tscnc-s0.9")
    (b'tscnc-s0.9', [b'ptscnc-s0', b'ps0.9'], True)
    >>> query_tokens("-seed1")
    (b'-seed1', [b'sseed1'], True)
    """
    text = q.casefold().encode("utf-8", "surrogatepass")
    found = list(_WORD.finditer(text))
    paired = [b.start() - a.end() <= SEP_MAX for a, b in pairwise(found)]
    if (len(found) == 2 and paired[0] and found[0].start() == 0
            and found[1].end() == len(text)):
        return text, [b"p" + text], False
    tokens = [b"p" + text[a.start():b.end()]
              for (a, b), pair in zip(pairwise(found), paired, strict=True) if pair]
    for i, m in enumerate(found):
        if (i > 0 and paired[i - 1]) or (i < len(paired) and paired[i]):
            continue                        # a pair of it holds its place in q
        start, end = m.start() > 0, m.end() < len(text)
        tokens.append((b"x" if end else b"s") if start else (b"e" if end else b"a"))
        tokens[-1] += m.group()
    return text, list(dict.fromkeys(tokens)), tokens != [b"a" + text]


# Lua: word (and tag) index maintenance, prepended to every script that re-indexes a run or a
# sweep.
LUA_WORDS = f"""
local TSCNC_WORD, TSCNC_SEP = '[0-9A-Za-z_\\128-\\255]+', '[^0-9A-Za-z_\\128-\\255]+'
-- The distinct words of a text and its pairs (word, separator, word: see the module docstring).
local function tscnc_words(text)
  local out, seen = {{}}, {{}}
  local i, prev, prev_end = 1, nil, 0
  while true do
    local a, b = string.find(text, TSCNC_WORD, i)
    if not a then break end
    local w = string.sub(text, a, b)
    if not seen[w] then seen[w] = true; out[#out + 1] = w end
    if prev and a - prev_end - 1 <= {SEP_MAX} and #prev <= {SUFFIX_MAX} and #w <= {SUFFIX_MAX} then
      local pair = prev .. string.sub(text, prev_end + 1, a - 1) .. w
      if not seen[pair] then seen[pair] = true; out[#out + 1] = pair end
    end
    prev, prev_end, i = w, b, b + 1
  end
  return out
end
local function tscnc_vocab(p, w, add)
  local key, a = p .. 'wordsfx', string.find(w, TSCNC_SEP)
  if a then                 -- a pair: the suffixes of its first word, then the rest of it
    key = p .. 'wordpair'
  elseif #w > {SUFFIX_MAX} then
    if add then redis.call('ZADD', p .. 'wordlong', 0, w) else redis.call('ZREM', p .. 'wordlong', w) end
    return
  end
  for i = 1, (a or #w + 1) - 1 do
    local b = string.byte(w, i)
    if b < 128 or b >= 192 then
      local m = string.sub(w, i) .. '\\0' .. w
      if a then m = string.sub(w, i) .. '\\0' .. string.sub(w, 1, i - 1) end
      if add then redis.call('ZADD', key, 0, m) else redis.call('ZREM', key, m) end
    end
  end
end
local function tscnc_word_add(p, w, seq, id)
  if redis.call('ZADD', p .. 'word:' .. w, seq, id) == 1 then
    if tonumber(redis.call('ZINCRBY', p .. 'words', 1, w)) == 1 then tscnc_vocab(p, w, true) end
  end
end
local function tscnc_word_rem(p, w, id)
  if redis.call('ZREM', p .. 'word:' .. w, id) == 1 then
    if tonumber(redis.call('ZINCRBY', p .. 'words', -1, w)) <= 0 then
      redis.call('ZREM', p .. 'words', w)
      tscnc_vocab(p, w, false)
    end
  end
end
-- Put an item into the sets of its tags (JSON list) in place of those of its indexed ones.
local function tscnc_tags_sync(key, id, p, seq, tags, old)
  if not tags or tags == '' then tags = '[]' end
  old = old or ''
  if tags == old then return end
  if old ~= '' then
    for _, t in ipairs(cjson.decode(old)) do redis.call('ZREM', p .. 'tag:' .. t, id) end
  end
  for _, t in ipairs(cjson.decode(tags)) do redis.call('ZADD', p .. 'tag:' .. t, seq, id) end
  redis.call('HSET', key, 'itags', tags)
end
-- Index the pending search text (field ftext) of a run, if any, in place of its indexed one.
local function tscnc_words_sync(run, id, p, seq, new)
  if not new then return end
  local old = redis.call('HGET', run, 'itext')
  local keep = {{}}
  for _, w in ipairs(tscnc_words(new)) do keep[w] = true end
  if old then
    for _, w in ipairs(tscnc_words(old)) do
      if not keep[w] then tscnc_word_rem(p, w, id) end
    end
  end
  for w in pairs(keep) do tscnc_word_add(p, w, seq, id) end
  redis.call('HSET', run, 'itext', new)
  redis.call('HDEL', run, 'ftext')
end
local function tscnc_words_drop(run, id, p)
  local old = redis.call('HGET', run, 'itext')
  if old then for _, w in ipairs(tscnc_words(old)) do tscnc_word_rem(p, w, id) end end
end
"""

# The runs whose search text contains q, into a set scored by seq.
# ARGV: index prefix, destination key, casefolded q, '1' to check candidates for all of q,
#       run key prefix, all-runs key, then q's tokens (query_tokens).
# Returns {key, 1 if the caller must delete it} or {'', 0} when nothing matches.
QUERY_SCRIPT = f"""
local p, dest, q, check = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local function tscnc_store(cmd, key, keys)   -- every set scores a run by its seq
  local args = {{key, #keys}}
  for _, k in ipairs(keys) do args[#args + 1] = k end
  args[#args + 1] = 'AGGREGATE'
  args[#args + 1] = 'MAX'
  return redis.call(cmd, unpack(args))
end
local tokens = {{unpack(ARGV, 7)}}
local long = redis.call('ZRANGE', p .. 'wordlong', 0, -1)
if #long > 0 then
  -- two tokens around a separator come from the pairs, unless a long word (no pairs) may
  -- hold one: then from the words ending with the first and starting with the second
  local out = {{}}
  for _, token in ipairs(tokens) do
    local split = false
    if string.sub(token, 1, 1) == 'p' then
      local a, b = string.find(token, '[^0-9A-Za-z_\\128-\\255]+', 2)
      local t1, t2 = string.sub(token, 2, a - 1), string.sub(token, b + 1)
      for _, w in ipairs(long) do
        if string.sub(w, -#t1) == t1 or string.sub(w, 1, #t2) == t2 then
          out[#out + 1] = 'e' .. t1
          out[#out + 1] = 's' .. t2
          check, split = true, true
          break
        end
      end
    end
    if not split then out[#out + 1] = token end
  end
  tokens = out
end
local sets, temps = {{}}, {{}}
for i, token in ipairs(tokens) do
  -- the words holding token t: anywhere (a), at their start (s), end (e), or being it (x);
  -- or the pairs starting with t (p)
  local mode, t, keys, seen = string.sub(token, 1, 1), string.sub(token, 2), {{}}, {{}}
  local function found(w)
    if not seen[w] then seen[w] = true; keys[#keys + 1] = p .. 'word:' .. w end
  end
  if mode == 'x' then
    if redis.call('EXISTS', p .. 'word:' .. t) == 1 then found(t) end
  elseif mode == 'p' then
    for _, m in ipairs(redis.call('ZRANGEBYLEX', p .. 'wordpair', '[' .. t, '[' .. t .. '\\255')) do
      local z = string.find(m, '\\0', #t + 1, true)
      found(string.sub(m, z + 1) .. string.sub(m, 1, z - 1))
    end
  else
    if #t <= {SUFFIX_MAX} then
      local lo, hi = '[' .. t, '[' .. t .. '\\255'
      if mode == 'e' then lo, hi = '[' .. t .. '\\0', '[' .. t .. '\\0\\255' end
      for _, m in ipairs(redis.call('ZRANGEBYLEX', p .. 'wordsfx', lo, hi)) do
        local z = string.find(m, '\\0', 1, true)
        local w = string.sub(m, z + 1)
        if mode ~= 's' or string.sub(m, 1, z - 1) == w then found(w) end
      end
    end
    for _, w in ipairs(long) do
      if (mode == 'a' and string.find(w, t, 1, true)) or (mode == 's' and string.sub(w, 1, #t) == t)
          or (mode == 'e' and string.sub(w, -#t) == t) then found(w) end
    end
  end
  if #keys == 0 then
    if #temps > 0 then redis.call('DEL', unpack(temps)) end
    return {{'', 0}}
  end
  if #keys == 1 then sets[#sets + 1] = keys[1]
  else
    local u = dest .. ':' .. i
    for j = 1, #keys, 1000 do
      local part = {{unpack(keys, j, math.min(j + 999, #keys))}}
      if j > 1 then part[#part + 1] = u end
      tscnc_store('ZUNIONSTORE', u, part)
    end
    redis.call('PEXPIRE', u, 60000)
    sets[#sets + 1] = u
    temps[#temps + 1] = u
  end
end
if #sets == 0 then
  redis.call('ZRANGESTORE', dest, ARGV[6], -{SCAN_LIMIT}, -1)
elseif #sets == 1 and not check then
  return {{sets[1], #temps}}
else
  tscnc_store('ZINTERSTORE', dest, sets)
  if #temps > 0 then redis.call('DEL', unpack(temps)) end
end
redis.call('PEXPIRE', dest, 60000)
if check then
  for _, id in ipairs(redis.call('ZRANGE', dest, 0, -1)) do
    local text = redis.call('HGET', ARGV[5] .. id, 'itext')
    if not (text and string.find(text, q, 1, true)) then redis.call('ZREM', dest, id) end
  end
end
return {{dest, 1}}
"""
