--[[
hetreport.lua -- the Quarto conventions of a hetreport report.qmd, for plain pandoc.

Used only on the builtin route (pandoc -> HTML, pandoc -> Typst -> PDF). Quarto
does all of this natively, so the same report.qmd renders on both routes.

What it does, in order (each pass is a separate traversal):
  1. Callouts: `::: {.callout-warning}` (note, tip, important, caution too),
     with an optional `## Title` as the first block, become boxes: an HTML
     <div class="callout callout-warning"> with a title row, or a Typst
     `#callout(kind: ..., title: [...])[...]` call (defined in the template).
     The `{{< pagebreak >}}` shortcode becomes a Typst page break, and an
     empty print-only page-break <div> in HTML. Display math followed by
     `{#eq-label}` is recognised as a labelled equation. In code blocks and
     inline code, Quarto's literal form of a shortcode, `{{{< ... >}}}`, is
     shown as `{{< ... >}}`, as Quarto shows it (hetreport writes text from a
     spec or data file in code in that form: report/format.py code_inert).
  2. Numbering, in document order: sections (as pandoc --number-sections does),
     figures with an id `fig-*`, tables with an id `tbl-*`, labelled equations.
     Figure and table captions get a bold "Figure N:" / "Table N:" prefix.
  3. References: a citation whose id starts with fig-, tbl-, sec-, eq- becomes a
     link "Figure N", "Table N", "Section N", "Equation N" (`-@fig-x` gives just
     "N"; `@Fig-x` is the same as `@fig-x`). An unknown label prints as
     "?@label" in bold and is reported on stderr, as Quarto does. Any other
     citation is left as its literal text (there is no bibliography).
  4. Images: a missing local image file stops the render with an error (pandoc
     itself would only warn and leave a broken image); `fig-alt` becomes the
     image's alt text in HTML.
]]

local is_typst = FORMAT:match('typst') ~= nil
local is_html = FORMAT:match('html') ~= nil

local CALLOUT_TITLES = {
  note = 'Note',
  tip = 'Tip',
  warning = 'Warning',
  important = 'Important',
  caution = 'Caution',
}

local REF_NAMES = {
  fig = 'Figure',
  tbl = 'Table',
  sec = 'Section',
  eq = 'Equation',
}

local NBSP = '\u{00A0}'

-- label -> { kind = 'fig'|'tbl'|'sec'|'eq', number = '1.2', title = Inlines }
local labels = {}
local counts = { fig = 0, tbl = 0, eq = 0 }

local function number_sections_enabled()
  return PANDOC_WRITER_OPTIONS ~= nil and PANDOC_WRITER_OPTIONS.number_sections
end

local function typst_inlines(inlines)
  -- Typst markup for some inlines (escaped by pandoc's own writer).
  local text = pandoc.write(pandoc.Pandoc({ pandoc.Plain(inlines) }), 'typst')
  return (text:gsub('%s+$', ''))
end

local function typst_string(s)
  return '"' .. s:gsub('\\', '\\\\'):gsub('"', '\\"') .. '"'
end

local function typst_label_ok(id)
  -- Typst labels allow letters, digits, '_', '-', ':' and '.'.
  return id:match('^[%w_%-:%.]+$') ~= nil
end

------------------------------------------------------------------------------
-- Pass 1: callouts, the pagebreak shortcode, labelled equations.
------------------------------------------------------------------------------

local function callout_kind(div)
  for _, cls in ipairs(div.classes) do
    local kind = cls:match('^callout%-(%a+)$')
    if kind and CALLOUT_TITLES[kind] then
      return kind
    end
  end
  return nil
end

local function render_callout(div)
  local kind = callout_kind(div)
  if not kind then
    return nil
  end
  local content = div.content
  local title = nil
  if #content > 0 and content[1].t == 'Header' then
    title = content[1].content
    content = pandoc.Blocks({ table.unpack(content, 2) })
  elseif div.attributes['title'] then
    title = pandoc.Inlines(div.attributes['title'])
  end
  if title == nil or #title == 0 then
    title = pandoc.Inlines(CALLOUT_TITLES[kind])
  end

  if is_typst then
    local out = pandoc.Blocks({})
    out:insert(pandoc.RawBlock('typst',
      '#callout(kind: ' .. typst_string(kind) .. ', title: [' .. typst_inlines(title) .. '])['))
    out:extend(content)
    out:insert(pandoc.RawBlock('typst', ']'))
    return out
  end

  local classes = { 'callout', 'callout-' .. kind }
  for _, cls in ipairs(div.classes) do
    if cls ~= 'callout-' .. kind and cls ~= 'callout' then
      table.insert(classes, cls)
    end
  end
  local attributes = {}
  for k, v in pairs(div.attributes) do
    if k ~= 'title' then
      attributes[k] = v
    end
  end
  if is_html then
    attributes['role'] = 'note'
  end
  return pandoc.Div({
    pandoc.Div({ pandoc.Plain(title) }, pandoc.Attr('', { 'callout-title' })),
    pandoc.Div(content, pandoc.Attr('', { 'callout-body' })),
  }, pandoc.Attr(div.identifier, classes, attributes))
end

local function is_pagebreak(para)
  local text = pandoc.utils.stringify(para)
  return text:match('^{{<%s*pagebreak%s*>}}$') ~= nil
end

local function pagebreak_block()
  if is_typst then
    return pandoc.RawBlock('typst', '#pagebreak(weak: true)')
  elseif is_html then
    return pandoc.RawBlock('html', '<div class="page-break" aria-hidden="true"></div>')
  end
  return pandoc.HorizontalRule()
end

-- A display equation with a label: Para [Math DisplayMath, (Space), Str "{#eq-x}"].
-- Marked by wrapping it in a Span with the label as id and class "equation";
-- the number is filled in by pass 2, the output form by pass 3.
local function mark_equations(para)
  local inlines = para.content
  local changed = false
  local i = 1
  local out = pandoc.Inlines({})
  while i <= #inlines do
    local el = inlines[i]
    local matched = false
    if el.t == 'Math' and el.mathtype == 'DisplayMath' then
      local j = i + 1
      if j <= #inlines and (inlines[j].t == 'Space' or inlines[j].t == 'SoftBreak') then
        j = j + 1
      end
      if j <= #inlines and inlines[j].t == 'Str' then
        local label, rest = inlines[j].text:match('^{#(eq%-[^%s}]+)}(.*)$')
        if label then
          out:insert(pandoc.Span({ el }, pandoc.Attr(label, { 'equation' })))
          if rest ~= '' then
            out:insert(pandoc.Str(rest))
          end
          i = j + 1
          matched = true
          changed = true
        end
      end
    end
    if not matched then
      out:insert(el)
      i = i + 1
    end
  end
  if changed then
    para.content = out
    return para
  end
  return nil
end

-- Quarto's literal shortcode in code text: {{{< x >}}} shows as {{< x >}} (the first >}}} closes).
local function unescape_shortcodes(el)
  if el.text:find('{{{<', 1, true) == nil then
    return nil
  end
  el.text = el.text:gsub('{{{<(.-)>}}}', '{{<%1>}}')
  return el
end

local pass_blocks = {
  CodeBlock = unescape_shortcodes,
  Code = unescape_shortcodes,
  Div = render_callout,
  Para = function(para)
    if is_pagebreak(para) then
      return pagebreak_block()
    end
    return mark_equations(para)
  end,
}

------------------------------------------------------------------------------
-- Pass 2: numbering in document order.
------------------------------------------------------------------------------

local section_counter = {}

local function section_number(level)
  for l = 1, level - 1 do
    section_counter[l] = section_counter[l] or 0
  end
  section_counter[level] = (section_counter[level] or 0) + 1
  for l = level + 1, #section_counter do
    section_counter[l] = nil
  end
  local parts = {}
  for l = 1, level do
    parts[#parts + 1] = tostring(section_counter[l])
  end
  return table.concat(parts, '.')
end

local function caption_prefix(kind, number)
  return pandoc.Inlines({ pandoc.Strong({ pandoc.Str(REF_NAMES[kind] .. NBSP .. number .. ':') }), pandoc.Space() })
end

local function prefix_caption(caption, prefix)
  -- caption.long is a list of blocks; prefix the first Plain/Para.
  local long = caption.long
  if #long == 0 then
    caption.long = pandoc.Blocks({ pandoc.Plain(prefix) })
    return caption
  end
  local first = long[1]
  if first.t == 'Plain' or first.t == 'Para' then
    local content = pandoc.Inlines({})
    content:extend(prefix)
    content:extend(first.content)
    first.content = content
    long[1] = first
  else
    long:insert(1, pandoc.Plain(prefix))
  end
  caption.long = long
  return caption
end

local function register(id, kind, number, title)
  if labels[id] then
    io.stderr:write('[hetreport] WARNING: duplicate cross-reference label "' .. id .. '"\n')
    return
  end
  labels[id] = { kind = kind, number = number, title = title }
end

local pass_numbers = {
  traverse = 'topdown',
  Header = function(h)
    if h.classes:includes('unnumbered') then
      return nil
    end
    local number = section_number(h.level)
    if h.identifier:match('^sec%-') then
      register(h.identifier, 'sec', number, h.content)
    end
    return nil
  end,
  Figure = function(fig)
    if fig.identifier:match('^fig%-') then
      counts.fig = counts.fig + 1
      local number = tostring(counts.fig)
      register(fig.identifier, 'fig', number)
      fig.caption = prefix_caption(fig.caption, caption_prefix('fig', number))
      return fig
    end
    return nil
  end,
  Table = function(tbl)
    -- Column widths come from the dashes of each pipe table, sized by
    -- hetreport to the columns' content (report/format.py: pipe_table), so
    -- that Quarto and this route lay tables out alike.
    if tbl.identifier:match('^tbl%-') then
      counts.tbl = counts.tbl + 1
      local number = tostring(counts.tbl)
      register(tbl.identifier, 'tbl', number)
      tbl.caption = prefix_caption(tbl.caption, caption_prefix('tbl', number))
    end
    if is_typst and #tbl.colspecs >= 10 then
      -- Many columns: a smaller type size keeps them inside the page.
      return {
        pandoc.RawBlock('typst', '#[#show table: set text(size: 0.78em)'),
        tbl,
        pandoc.RawBlock('typst', ']'),
      }
    end
    return tbl
  end,
  Span = function(span)
    if span.classes:includes('equation') and span.identifier:match('^eq%-') then
      counts.eq = counts.eq + 1
      local number = tostring(counts.eq)
      register(span.identifier, 'eq', number)
      span.attributes['number'] = number
      return span
    end
    return nil
  end,
}

------------------------------------------------------------------------------
-- Pass 3: references, equations, images.
------------------------------------------------------------------------------

local function reference_text(entry, mode)
  local number = entry.number
  if entry.kind == 'sec' and not number_sections_enabled() then
    -- Unnumbered sections are referred to by their title.
    return pandoc.Inlines(entry.title)
  end
  if mode == 'SuppressAuthor' then
    return pandoc.Inlines({ pandoc.Str(number) })
  end
  return pandoc.Inlines({ pandoc.Str(REF_NAMES[entry.kind] .. NBSP .. number) })
end

local function lookup(id)
  local entry = labels[id]
  if entry then
    return id, entry
  end
  -- @Fig-x refers to #fig-x (Quarto capitalises the reference word).
  local lowered = id:sub(1, 1):lower() .. id:sub(2)
  if labels[lowered] then
    return lowered, labels[lowered]
  end
  return nil, nil
end

local function is_crossref_id(id)
  local prefix = id:match('^(%a+)%-')
  return prefix ~= nil and REF_NAMES[prefix:lower()] ~= nil
end

local function render_cite(cite)
  local any_crossref = false
  for _, c in ipairs(cite.citations) do
    if is_crossref_id(c.id) then
      any_crossref = true
    end
  end
  if not any_crossref then
    -- No bibliography: keep the literal text rather than a dangling citation.
    return cite.content
  end
  local out = pandoc.Inlines({})
  for i, c in ipairs(cite.citations) do
    if i > 1 then
      out:insert(pandoc.Str(','))
      out:insert(pandoc.Space())
    end
    if #c.prefix > 0 then
      out:extend(c.prefix)
      out:insert(pandoc.Space())
    end
    local target, entry = lookup(c.id)
    if entry then
      out:insert(pandoc.Link(reference_text(entry, c.mode), '#' .. target, '', pandoc.Attr('', { 'crossref' })))
    else
      io.stderr:write('[hetreport] WARNING: unable to resolve cross-reference @' .. c.id .. '\n')
      out:insert(pandoc.Strong({ pandoc.Str('?@' .. c.id) }))
    end
    if #c.suffix > 0 then
      local first = c.suffix[1]
      if not (first.t == 'Str' and first.text:match('^[,.;:]')) and first.t ~= 'Space' then
        out:insert(pandoc.Space())
      end
      out:extend(c.suffix)
    end
  end
  return out
end

local function render_equation(span)
  if not (span.classes:includes('equation') and span.attributes['number']) then
    return nil
  end
  local number = span.attributes['number']
  local id = span.identifier
  if is_typst then
    local out = pandoc.Inlines({})
    out:insert(pandoc.RawInline('typst',
      '#[#set math.equation(numbering: (..n) => ' .. typst_string('(' .. number .. ')') .. ', supplement: none); '))
    out:extend(span.content)
    if typst_label_ok(id) then
      out:insert(pandoc.RawInline('typst', ' <' .. id .. '>]'))
    else
      out:insert(pandoc.RawInline('typst', ']'))
    end
    return out
  end
  local content = pandoc.Inlines({})
  content:insert(pandoc.Span(span.content, pandoc.Attr('', { 'equation-body' })))
  content:insert(pandoc.Span({ pandoc.Str('(' .. number .. ')') }, pandoc.Attr('', { 'equation-number' })))
  return pandoc.Span(content, pandoc.Attr(id, { 'equation' }))
end

local function file_exists(path)
  local fh = io.open(path, 'rb')
  if fh then
    fh:close()
    return true
  end
  return false
end

local function check_image(img)
  local src = img.src
  if src:match('^data:') or src:match('^%a[%w+.-]*://') then
    return nil
  end
  local path = src:gsub('[?#].*$', '')
  local decoded = path:gsub('%%(%x%x)', function(h) return string.char(tonumber(h, 16)) end)
  if not (file_exists(path) or file_exists(decoded)) then
    error('image file not found: "' .. src .. '" (looked for it relative to the project folder; '
      .. 'write the figure there or fix the path in the document)', 0)
  end
  local alt = img.attributes['fig-alt']
  if alt then
    img.attributes['fig-alt'] = nil
    if is_html then
      img.attributes['alt'] = alt
    elseif FORMAT:match('typst') then
      -- pandoc's Typst writer drops alt text: write the image call with its alt: argument
      local function q(text)
        return '"' .. text:gsub('\\', '\\\\'):gsub('"', '\\"') .. '"'
      end
      local args = q(img.src)
      local width = img.attributes['width']
      if width and width:match('^%d+%.?%d*%%$') then
        args = args .. ', width: ' .. width
      elseif width and width:match('^%d+%.?%d*[ci][mn]$') then
        args = args .. ', width: ' .. width
      end
      return pandoc.RawInline('typst', '#image(' .. args .. ', alt: ' .. q(alt) .. ')')
    else
      -- docx (the picture's description) and Typst (image's alt:) take the image's own text as alt text;
      -- a figure's caption is separate from it
      img.caption = pandoc.Inlines(alt)
    end
    return img
  end
  return nil
end

local pass_refs = {
  Cite = render_cite,
  Span = render_equation,
  Image = check_image,
}

return {
  pass_blocks,
  pass_numbers,
  pass_refs,
}
