// plugin/nbdkit_argv.h — was nbdkit started read-only (-r)? Read from its command line.
//
// nbdkit gives a plugin no way to ask before get_ready (only .open learns it, per
// connection, after the backing file would already be open read-write and the journal
// replayed). So the plugin reads /proc/self/cmdline and parses it as nbdkit's getopt_long
// does (nbdkit leaves argv untouched so that /proc/PID/cmdline stays sane): options
// anywhere until "--", short bundles (-fr), attached arguments (-t4, --threads=4) and
// unambiguous long prefixes (--read). The table holds every nbdkit option that takes an
// argument, 1.32 to current; an option this table does not know is taken as having no
// argument. The plugin also checks .open's readonly flag against the answer.
#pragma once

#include <string>
#include <vector>

namespace untorn {

// argv[0] included, as in /proc/self/cmdline.
bool nbdkit_args_say_readonly(const std::vector<std::string>& argv);
// This process's argv from /proc/self/cmdline (empty when it cannot be read).
std::vector<std::string> own_command_line();

}  // namespace untorn
