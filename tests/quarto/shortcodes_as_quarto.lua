-- What Quarto's shortcode processing would make of a .qmd file, without Quarto.
-- Run as `pandoc lua shortcodes_as_quarto.lua FILE.qmd`; prints JSON:
--   lost:    characters of the document that Quarto's first scan of the raw text drops (its
--            grammar stops at an opening "{{<" that is never closed; readqmd.lua keeps only
--            what it matched);
--   raw:     the shortcodes that scan finds (escaped ones, {{{< … >}}}, are not listed);
--   code:    the text of every code block and inline code as Quarto shows it (Quarto's code
--            shortcode pass, customnodes/shortcodes.lua, with every shortcode that would run
--            replaced by "<<SHORTCODE {{< … >}}>>");
--   meta:    words (Str) of metadata values that Quarto's metadata pass (modules/astshortcode.lua)
--            would treat as the start or end of a shortcode.
-- The grammar is Quarto's own (lpegshortcode.lua, vendored next to this file); the three passes
-- follow readqmd.lua, customnodes/shortcodes.lua and modules/astshortcode.lua.
local here = pandoc.path.directory(arg[0] or PANDOC_SCRIPT_FILE or '.')
package.path = here .. '/?.lua;' .. package.path
local sc = require('lpegshortcode')

local path = arg[1]
local fh = assert(io.open(path, 'rb'))
local text = fh:read('a')
fh:close()

local function hex_to_string(hex)
  return (hex:gsub('..', function(cc) return string.char(tonumber(cc, 16)) end))
end

-- 1. the raw scan (readqmd.lua: parse_md_shortcode_2), then the restoring of what it encoded
local uuid = 'b58fc729%-690b%-4000%-b19f%-365a4093b2ff;([A-Fa-f0-9]+);'
local scanned = sc.parse_md_shortcode_2(text) or ''
local raw = {}
for hex in scanned:gmatch(uuid) do
  local s = hex_to_string(hex)
  if s:sub(1, 4) ~= '{{{<' then
    table.insert(raw, s)
  end
end
local restored = scanned:gsub(uuid, hex_to_string)
local lost = #text - #restored

-- 2. code text through Quarto's code shortcode parser
local code_parser = sc.make_shortcode_parser({
  escaped = function(s) return '{{<' .. s .. '>}}' end,
  string = function(s) return { value = s } end,
  keyvalue = function(k, r, v) return { name = k, value = v } end,
  shortcode = function(open, space, lst, close)
    local parts = {}
    for _, v in ipairs(lst) do
      parts[#parts + 1] = type(v) == 'table' and ((v.name and (v.name .. '=') or '') .. v.value) or v
    end
    return '<<SHORTCODE {{< ' .. table.concat(parts, ' ') .. ' >}}>>'
  end,
})
local code = {}
local doc = pandoc.read(text, 'markdown')
local function code_text(el)
  if el.attr and el.attr.attributes['shortcodes'] == 'false' then
    table.insert(code, el.text)
  else
    table.insert(code, sc.wrap_lpeg_match(code_parser, el.text) or el.text)
  end
end
doc:walk({ CodeBlock = code_text, Code = code_text })

-- 3. metadata words (astshortcode.lua: transformShortcodeInlines)
local meta = {}
local function word(el)
  local t = el.text
  if t:match('{{{+<$') or t:match('^>}}}+') or t:sub(-5) == '{{</*' or t:sub(1, 5) == '*/>}}'
      or t:sub(-3) == '{{<' or t:sub(1, 3) == '>}}' then
    table.insert(meta, t)
  end
end
pandoc.Pandoc({}, doc.meta):walk({ Str = word })

print(pandoc.json.encode({ lost = lost, raw = raw, code = code, meta = meta }))
