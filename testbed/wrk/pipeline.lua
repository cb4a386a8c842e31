-- wrk's pipeline example: each write sends DEPTH requests at once (default 16), so DEPTH
-- requests are in flight per connection, answered in order. testbed wrk --pipeline DEPTH
-- runs it as: wrk -s pipeline.lua URL -- DEPTH
init = function(args)
   local depth = tonumber(args[1]) or 16
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format(nil, wrk.path)
   end
   req = table.concat(r)
end

request = function()
   return req
end
