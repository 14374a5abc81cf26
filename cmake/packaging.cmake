# Debian packages through CPack (scripts/package.sh): hvsock (component
# runtime: hvsockd, hvsock, hvsock-static, the preload shim, the systemd
# unit) and libhvsock-dev (component dev: headers, the static library, the
# CMake package and the pkg-config file). Configure with
# -DCMAKE_INSTALL_PREFIX=/usr so the paths are Debian's.

# .invalid (RFC 2606): there is no mailing list to name yet.
set(hvsock_maintainer "hvsock developers <hvsock-devel@hvsock.invalid>")
# Debian revision 1: the packaging lives beside the source but is not it.
set(hvsock_deb_version ${PROJECT_VERSION}-1)

# /usr/share/doc/PACKAGE: the copyright file and a Debian changelog (gzip
# -n: no name or time stamp inside, so rebuilds are identical).
string(TIMESTAMP hvsock_changelog_date "%a, %d %b %Y %H:%M:%S +0000" UTC)
foreach(package hvsock libhvsock-dev)
  if(package STREQUAL "hvsock")
    set(component runtime)
  else()
    set(component dev)
  endif()
  set(doc_dir ${CMAKE_CURRENT_BINARY_DIR}/package-doc/${package})
  file(WRITE ${doc_dir}/changelog.Debian
       "${package} (${hvsock_deb_version}) unstable; urgency=medium\n\n"
       "  * Built from the hvsock source tree (scripts/package.sh).\n\n"
       " -- ${hvsock_maintainer}  ${hvsock_changelog_date}\n")
  execute_process(COMMAND gzip -n -9 -f ${doc_dir}/changelog.Debian COMMAND_ERROR_IS_FATAL ANY)
  install(FILES ${doc_dir}/changelog.Debian.gz ${PROJECT_SOURCE_DIR}/packaging/debian/copyright
          DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/${package} COMPONENT ${component})
endforeach()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME hvsock)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${hvsock_maintainer}")
set(CPACK_COMPONENTS_ALL runtime dev)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # Depends from the binaries' libraries
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "")

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME hvsock)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION net)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "init-system-helpers (>= 1.54~)")
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
    "Hyper-V sockets for Linux: the hvsockd switch and the hvsock CLI\n"
    "hvsockd plays the hypervisor's socket switch: host, VMs and QEMU guests\n"
    "talk over stream sockets addressed by GUIDs (VmId and ServiceId).\n"
    "hvsock manages partitions and services and runs integration commands.")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/debian/postinst ${PROJECT_SOURCE_DIR}/packaging/debian/prerm
    ${PROJECT_SOURCE_DIR}/packaging/debian/postrm)

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libhvsock-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_RECOMMENDS "hvsock (= ${hvsock_deb_version})")
set(CPACK_COMPONENT_DEV_DESCRIPTION
    "Hyper-V sockets for Linux: libhvsock development files\n"
    "Headers, the static library, the CMake package (find_package(hvsock))\n"
    "and the pkg-config file of libhvsock, the C++20 library programs use to\n"
    "listen and connect on hvsock endpoints.")

include(CPack)
