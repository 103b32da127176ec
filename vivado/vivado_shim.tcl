# vivado_shim.tcl: a stand-in for Vivado's Tcl shell under plain tclsh, for a RECORDED DRY RUN.
#
# NOT Vivado. Nothing is synthesised, placed, routed or timed. Every Vivado command a script
# calls is recorded, in order, with its arguments, in a log; real Tcl (set, if, file, proc,
# expr ...) runs for real, so the script's own logic and its checks execute. Where a later
# step reads what a Vivado command makes (a wrapper, an IP's component.xml, the .hwh, the
# bitstream), the shim writes a small placeholder file that says "DRY RUN placeholder" and
# logs it as `creates`. Values returned by get_property / get_timing_paths are placeholders
# too (listed in the log with `=>`), e.g. the worst slack, which is LICFPGA_SHIM_WNS /
# LICFPGA_SHIM_WHS (default 0.0): set one negative to watch the script's timing check fail.
#
# Command line: what the `vivado` wrapper (vivado/shim/vivado) passes on, as Vivado takes it:
#   tclsh vivado_shim.tcl [-mode batch] [-nojournal] [-log F] -source SCRIPT [-tclargs ARGS...]
# Environment:
#   LICFPGA_SHIM_LOG     the command log (appended; default vivado_commands.log in the cwd)
#   LICFPGA_SHIM_PROPS   a Tcl file of `prop {NAME OBJECT} VALUE` lines (e.g. stream widths)
#   LICFPGA_SHIM_STRICT  1 (default): a command the shim does not know is an error (a typo in
#                        our Tcl fails the dry run); 0: recorded as `unchecked` (FINN's Tcl)
# Exit status as Vivado's batch mode: 0, or 1 when the script raises an error / exits 1.

set shim_args $argv
set shim_script ""
set shim_tclargs {}
for {set i 0} {$i < [llength $shim_args]} {incr i} {
    set a [lindex $shim_args $i]
    switch -- $a {
        -source { incr i; set shim_script [lindex $shim_args $i] }
        -tclargs { set shim_tclargs [lrange $shim_args [expr {$i + 1}] end]; break }
        -mode - -log - -journal { incr i }
        default {}
    }
}
if {$shim_script eq ""} {
    puts stderr "vivado_shim: no -source script given"
    exit 2
}
set shim_logfile [expr {[info exists env(LICFPGA_SHIM_LOG)] ? $env(LICFPGA_SHIM_LOG) : "vivado_commands.log"}]
set shim_strict [expr {[info exists env(LICFPGA_SHIM_STRICT)] ? $env(LICFPGA_SHIM_STRICT) : 1}]
set shim_log [open $shim_logfile a]
fconfigure $shim_log -buffering line
puts $shim_log "# ---- source [file normalize $shim_script] (cwd [pwd]) -tclargs $shim_tclargs"

array set shim_prop {}
if {[info exists env(LICFPGA_SHIM_PROPS)] && $env(LICFPGA_SHIM_PROPS) ne ""} {
    proc prop {key value} { set ::shim_prop($key) $value }
    source $env(LICFPGA_SHIM_PROPS)
    rename prop {}
}
set shim_n 0
set shim_project_dir ""
set shim_project_name ""
namespace eval ipx {}

proc shim_record {words {result ""}} {
    set line [format "%4d  %s" [incr ::shim_n] $words]
    if {$result ne ""} { append line "  => $result" }
    puts $::shim_log $line
}
proc shim_placeholder {path what} {
    file mkdir [file dirname $path]
    set f [open $path w]
    puts $f "DRY RUN placeholder for $what, written by vivado/vivado_shim.tcl (no Vivado ran): not a real file"
    close $f
    puts $::shim_log "      creates [file normalize $path]  (placeholder: $what)"
}
proc shim_opt {words name {default ""}} {
    set i [lsearch -exact $words $name]
    return [expr {$i < 0 ? $default : [lindex $words [expr {$i + 1}]]}]
}

# ---- Vivado commands: recorded; the ones whose result a script uses return a placeholder
# value. (Names and options: AMD UG835, Vivado Design Suite Tcl Command Reference.)
set shim_plain {
    set_msg_config update_ip_catalog create_bd_design apply_bd_automation connect_bd_net
    connect_bd_intf_net update_compile_order assign_bd_address validate_bd_design save_bd_design
    launch_runs wait_on_run open_run delete_bd_objs make_bd_pins_external
    make_bd_intf_pins_external create_bd_port create_bd_intf_port create_bd_pin create_bd_intf_pin
    set_top config_ip_cache
    ipx::create_xgui_files ipx::update_checksums ipx::save_core ipx::remove_all_file
    ipx::remove_file_group ipx::remove_file ipx::add_file_group ipx::add_file
    ipx::add_address_block ipx::add_memory_map ipx::associate_bus_interfaces
    ipx::infer_bus_interface ipx::infer_bus_interfaces
}
foreach c $shim_plain {
    proc $c {args} "shim_record \[list $c {*}\$args\]; return {}"
}
# objects: the name they were asked for
foreach c {create_bd_cell get_bd_pins get_bd_intf_pins get_bd_ports get_bd_intf_ports get_bd_cells
           get_bd_intf_nets get_runs get_ipdefs current_fileset current_project get_files
           ipx::current_core ipx::find_open_core ipx::get_file_groups ipx::get_files
           ipx::get_bus_interfaces ipx::get_bus_parameters ipx::get_user_parameters ipx::get_ports} {
    proc $c {args} "return \[shim_object $c \$args\]"
}
proc shim_object {cmd words} {
    set name [lindex $words end]
    if {$cmd ne "get_ipdefs" && ([lsearch -glob $words -filter] >= 0 || [lsearch -glob $words -of*] >= 0)} {
        # a query by filter or relation: the dry run has no design, so it finds nothing
        shim_record [list $cmd {*}$words] "{} (placeholder: nothing found)"
        return ""
    }
    switch -- $cmd {
        current_project { set r $::shim_project_name }
        current_fileset { set r sources_1 }
        get_ipdefs {
            # the IP catalog: a packaged IP of that NAME in one of the project's IP repositories
            set r ""
            if {[regexp {NAME == ([A-Za-z0-9_]+)} $words -> ipname]} {
                foreach repo [get_ip_repo_paths] {
                    foreach xml [concat [glob -nocomplain [file join $repo component.xml]] \
                                        [glob -nocomplain [file join $repo * component.xml]]] {
                        set f [open $xml]; set t [read $f]; close $f
                        if {[string first $ipname $t] >= 0} { set r "xilinx_finn:finn:$ipname:1.0" }
                    }
                }
            }
        }
        get_files {
            # a project file by name: licfpga.bd -> the block design's file in the project
            if {[string match *.bd $name] && [file pathtype $name] eq "relative"} {
                set stem [file rootname $name]
                set r [file join $::shim_project_dir $::shim_project_name.srcs sources_1 bd $stem $name]
            } else { set r $name }
        }
        default { set r $name }
    }
    shim_record [list $cmd {*}$words] $r
    return $r
}
set shim_ip_repos {}
proc get_ip_repo_paths {} { return $::shim_ip_repos }
proc create_project {args} {
    # create_project [-force] [-part P] name dir
    set words [lsearch -all -inline -not -exact $args -force]
    set part [shim_opt $words -part]
    set rest [lsearch -all -inline -not -exact $words -part]
    set rest [lsearch -all -inline -not -exact $rest $part]
    set ::shim_project_name [lindex $rest 0]
    set ::shim_project_dir [file normalize [lindex $rest 1]]
    file mkdir $::shim_project_dir
    shim_record [list create_project {*}$args]
}
proc set_property {args} {
    if {[lindex $args 0] eq "ip_repo_paths"} {
        set ::shim_ip_repos [lindex $args 1]
        foreach d $::shim_ip_repos {
            if {![file isdirectory $d]} { error "set_property ip_repo_paths: no such directory: $d" }
        }
    }
    shim_record [list set_property {*}$args]
}
proc get_property {args} {
    set words [lsearch -all -inline -not -glob $args -*]
    set name [lindex $words 0]
    set obj [lindex $words 1]
    if {[info exists ::shim_prop([list $name $obj])]} {
        set r $::shim_prop([list $name $obj])
    } elseif {$name eq "PROGRESS"} { set r "100%"
    } elseif {$name eq "STATUS"} { set r "route_design Complete!"
    } elseif {$name eq "SLACK"} {
        set r [expr {[string match *hold* $obj] ? [shim_env LICFPGA_SHIM_WHS 0.0] : [shim_env LICFPGA_SHIM_WNS 0.0]}]
    } elseif {$name eq "DIRECTORY"} { set r [file join $::shim_project_dir $::shim_project_name.runs $obj]
    } else { error "vivado_shim: no placeholder value for get_property $name $obj (add it to LICFPGA_SHIM_PROPS)" }
    shim_record [list get_property {*}$args] "$r (placeholder)"
    return $r
}
proc shim_env {name default} {
    return [expr {[info exists ::env($name)] ? $::env($name) : $default}]
}
proc get_timing_paths {args} {
    set kind [expr {"-hold" in $args ? "hold" : "setup"}]
    set r "worst_${kind}_path"
    shim_record [list get_timing_paths {*}$args] $r
    return $r
}
proc make_wrapper {args} {
    # Vivado (2020.1+) writes <bd dir in .gen>/hdl/<bd>_wrapper.v and returns its path
    set bd [shim_opt $args -files]
    set stem [file rootname [file tail $bd]]
    set gen [string map {.srcs .gen} [file dirname $bd]]
    set r [file join $gen hdl ${stem}_wrapper.v]
    shim_record [list make_wrapper {*}$args] $r
    shim_placeholder $r "the block design's HDL wrapper"
    # FINN looks for it under .srcs (older Vivado) first, then .gen
    return $r
}
proc generate_target {args} {
    set bd [lindex $args end]
    shim_record [list generate_target {*}$args]
    set stem [file rootname [file tail $bd]]
    set gen [string map {.srcs .gen} [file dirname $bd]]
    shim_placeholder [file join $gen hw_handoff $stem.hwh] "the hardware handoff (.hwh) of $stem"
}
proc write_bitstream {args} {
    set words [lsearch -all -inline -not -glob $args -*]
    shim_record [list write_bitstream {*}$args]
    shim_placeholder [lindex $words end] "the bitstream"
}
foreach c {report_timing_summary report_utilization report_power} {
    proc $c {args} "shim_report $c \$args"
}
proc add_files {args} {
    # as Vivado: a file that does not exist is an error (strict: our Tcl; FINN's: flagged)
    set files [lsearch -all -inline -not -glob $args -*]
    shim_record [list add_files {*}$args]
    foreach f $files {
        if {[file exists $f]} { continue }
        if {$::shim_strict} { error "add_files: no such file: $f" }
        puts $::shim_log "      MISSING $f"
    }
}
proc shim_report {cmd words} {
    set args $words
    set f [shim_opt $args -file]
    shim_record [list $cmd {*}$args]
    if {$f ne ""} { shim_placeholder $f "$cmd" }
    if {"-return_string" in $args} {
        return "(dry run: $cmd has no content -- no design was implemented; the slack values are the shim's placeholders)"
    }
    return ""
}
proc ipx::package_project {args} {
    set root [shim_opt $args -root_dir]
    shim_record [list ipx::package_project {*}$args]
    file mkdir $root
    # the packaged IP (FINN names it with -vendor/-library/-taxonomy; the IP is finn_design)
    set f [open [file join $root component.xml] w]
    puts $f "<!-- DRY RUN placeholder for the packaged IP finn_design (component.xml), written by vivado/vivado_shim.tcl: no Vivado ran -->"
    close $f
    puts $::shim_log "      creates [file normalize [file join $root component.xml]]  (placeholder: packaged IP finn_design)"
}

# anything else: an error in strict mode (our scripts), recorded as unchecked otherwise
rename unknown shim_tcl_unknown
proc unknown {args} {
    # Tcl's own lazily loaded commands (clock, msgcat ...) first
    if {[auto_load [lindex $args 0]]} { return [uplevel 1 $args] }
    if {$::shim_strict} {
        error "vivado_shim: [lindex $args 0] is not a Vivado command the shim knows (typo? else add it to vivado/vivado_shim.tcl)"
    }
    shim_record "$args  (unchecked: not modelled by the shim)"
    return ""
}

set argv $shim_tclargs
set argc [llength $argv]
set argv0 $shim_script
rename exit shim_real_exit
proc exit {{code 0}} {
    puts $::shim_log "# ---- exit $code"
    close $::shim_log
    shim_real_exit $code
}
if {[catch {uplevel #0 [list source $shim_script]} msg]} {
    puts "ERROR: $msg"
    puts $::shim_log "# ---- ERROR: $msg"
    exit 1
}
exit 0
