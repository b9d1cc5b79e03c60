//! The Redis side of the directory's writes: the Lua scripts (each one atomic step) and the
//! commands that carry them, built once here for the link's queue, its rejoin and its liveness checks.

use super::super::wire::{self, RoomEvent};
use super::super::ConnId;

/// Claims a name or its first free variant. A claim held by a node without a heartbeat is free.
/// KEYS: none (the keys depend on the variant). ARGV: name-key prefix, wanted, owner
/// (`<node>/<conn>`), suffix key, heartbeat-key prefix, most variants to try.
const CLAIM_LUA: &str = r"
local function free(key)
  local holder = redis.call('GET', key)
  if not holder or holder == ARGV[3] then return true end
  local node = string.match(holder, '^(.*)/')
  return node ~= nil and redis.call('EXISTS', ARGV[5] .. node) == 0
end
local name = ARGV[2]
for _ = 1, tonumber(ARGV[6]) do
  if free(ARGV[1] .. name) then
    redis.call('SET', ARGV[1] .. name, ARGV[3])
    return name
  end
  name = ARGV[2] .. redis.call('INCR', ARGV[4])
end
return false
";

/// Deletes a claim if (and only if) `owner` still holds it. KEYS: the claim. ARGV: owner.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Removes a dead node's members from one room's hash, with their name claims, unless the node is
/// alive after all (it may have rejoined since it was judged): the check and the removal are one
/// step. KEYS: the member hash. ARGV: the dead node, its heartbeat key, the room's name-key prefix.
const REAP_LUA: &str = r"
if redis.call('EXISTS', ARGV[2]) == 1 then return -1 end
local fields = redis.call('HGETALL', KEYS[1])
local removed = 0
for i = 1, #fields, 2 do
  local field, name = fields[i], fields[i + 1]
  if string.sub(field, 1, #ARGV[1] + 1) == ARGV[1] .. '/' then
    redis.call('HDEL', KEYS[1], field)
    if redis.call('GET', ARGV[3] .. name) == field then redis.call('DEL', ARGV[3] .. name) end
    removed = removed + 1
  end
end
return removed
";

/// The claim script's call for `node`'s connection `conn`: `wanted` or, up to `variants` tries,
/// a free variant of it. Its answer is the name claimed, or nil.
pub(super) fn claim_cmd(node: &str, room: &str, wanted: &str, conn: ConnId, variants: u32) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(CLAIM_LUA)
        .arg(0)
        .arg(wire::name_key_prefix(room))
        .arg(wanted)
        .arg(wire::member_field(node, conn))
        .arg(wire::suffix_key(room))
        .arg(wire::NODE_ALIVE_KEY_PREFIX)
        .arg(variants);
    cmd
}

/// Gives up a name claim, if `owner` still holds it. Plain EVAL: releases are rare (a leave or a
/// rename), and the script text is shorter than the round trip a missing-script retry costs.
pub(super) fn release_writes(pipe: &mut redis::Pipeline, room: &str, name: &str, owner: &str) {
    let key = format!("{}{name}", wire::name_key_prefix(room));
    pipe.cmd("EVAL").arg(RELEASE_LUA).arg(1).arg(key).arg(owner).ignore();
}

/// The writes for a member's name (or its leaving) and the room's change notice.
pub(super) fn member_writes<'p>(
    pipe: &'p mut redis::Pipeline,
    node: &str,
    room: &str,
    conn: ConnId,
    name: Option<&str>,
) -> &'p mut redis::Pipeline {
    let field = wire::member_field(node, conn);
    match name {
        Some(name) => {
            pipe.hset(wire::members_key(room), field, name).ignore();
            pipe.sadd(wire::node_rooms_key(node), room).ignore();
        }
        None => {
            pipe.hdel(wire::members_key(room), field).ignore();
        }
    }
    pipe.publish(wire::room_channel(room), RoomEvent::Members { node: node.to_owned() }.encode()).ignore()
}

/// The reap script's call: removes `dead`'s members of `room` and their claims; answers how many
/// it removed, or -1 when the node beats again.
pub(super) fn reap_cmd(room: &str, dead: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(REAP_LUA)
        .arg(1)
        .arg(wire::members_key(room))
        .arg(dead)
        .arg(wire::node_alive_key(dead))
        .arg(wire::name_key_prefix(room));
    cmd
}

/// This node's heartbeat for `ttl_ms`, and its entry in the set of nodes.
pub(super) fn beat_writes(node: &str, ttl_ms: u64) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.cmd("SET")
        .arg(wire::node_alive_key(node))
        .arg(1)
        .arg("PX")
        .arg(ttl_ms)
        .ignore()
        .sadd(wire::nodes_key(), node)
        .ignore();
    pipe
}

/// What a node leaving the cluster removes: its heartbeat, its room set, its entry among the nodes.
pub(super) fn leave_writes(node: &str) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.del(wire::node_alive_key(node))
        .ignore()
        .del(wire::node_rooms_key(node))
        .ignore()
        .srem(wire::nodes_key(), node)
        .ignore();
    pipe
}
