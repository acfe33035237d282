# Run by `cmake --install` (see tools/CMakeLists.txt): installs the systemd
# unit and the hotplug script with the paths of the binaries as installed now.
# CMAKE_INSTALL_PREFIX here is the install-time prefix (--prefix), and
# file(INSTALL) honours DESTDIR, so a package build and a plain install both
# get paths that are true on the target machine.
if(IS_ABSOLUTE "${XBB_SBINDIR}")
  set(XBBD_SBINDIR "${XBB_SBINDIR}")
else()
  set(XBBD_SBINDIR "${CMAKE_INSTALL_PREFIX}/${XBB_SBINDIR}")
endif()

# xbbd.service: @XBBD_SBINDIR@ in ExecStart.
configure_file("${XBB_TOOLS_SOURCE_DIR}/xbbd.service" "${XBB_TOOLS_BINARY_DIR}/install/xbbd.service" @ONLY)
file(INSTALL DESTINATION "${XBB_SYSTEMD_UNIT_DIR}" TYPE FILE FILES "${XBB_TOOLS_BINARY_DIR}/install/xbbd.service")

# block-xbbd: libxl runs it with its own PATH, which need not hold the
# install prefix, so the default xbbctl becomes the installed one. The
# source keeps a plain `xbbctl` so the script also runs from the tree (the
# lab and tests/tools put xbbctl on PATH or set XBBCTL).
file(READ "${XBB_TOOLS_SOURCE_DIR}/block-xbbd" script)
set(default_line "XBBCTL=\${XBBCTL:-xbbctl}")
string(FIND "${script}" "${default_line}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "tools/block-xbbd no longer has the line '${default_line}' that the install rewrites")
endif()
string(REPLACE "${default_line}" "XBBCTL=\${XBBCTL:-${XBBD_SBINDIR}/xbbctl}" script "${script}")
file(WRITE "${XBB_TOOLS_BINARY_DIR}/install/block-xbbd" "${script}")
file(INSTALL DESTINATION /etc/xen/scripts TYPE PROGRAM FILES "${XBB_TOOLS_BINARY_DIR}/install/block-xbbd")
