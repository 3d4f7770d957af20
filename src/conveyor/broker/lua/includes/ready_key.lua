-- The ready list for a priority, given the three lists high, normal, low.
local function ready_key(high, normal, low, priority)
  if priority == 'high' then return high end
  if priority == 'low' then return low end
  return normal
end
