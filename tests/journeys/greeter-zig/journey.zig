//! A Zig journey on the C SDK: greets, sleeps a day, and says goodbye,
//! checking that its globals survived the snapshot.

const c = @import("cairn");

var state: u8 = 0;
var greeted: u32 = 0;

export fn cairn_journey_meta(m: *c.cairn_meta) void {
    m.id = "greeter-zig";
    m.name = "Greets in Zig";
}

export fn cairn_journey_run() c.cairn_step {
    switch (state) {
        0 => {
            greeted += 1;
            if (!c.cairn_send("hello", "{}", null)) return c.cairn_fail(&c.cairn_last_error().*.message);
            if (!c.cairn_sleep(86_400_000)) return c.cairn_fail(&c.cairn_last_error().*.message);
            state = 1;
            return c.cairn__waiting();
        },
        1 => {
            greeted += 1;
            c.cairn_checkpoint(if (greeted == 2) "greeted-twice" else "lost-state");
            if (!c.cairn_send("bye", "{}", null)) return c.cairn_fail(&c.cairn_last_error().*.message);
            state = 2;
            return .{ .kind = 1, .reason = null };
        },
        else => return c.cairn_fail("the journey already ended"),
    }
}
