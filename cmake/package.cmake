# package.cmake — `cmake --install` and `cpack -G DEB` (included from CMakeLists.txt). Installs the
# binary, the public plugin header (when the tree has it), a pkg-config file, the suites, the
# datasets the needle task defaults to, and the man page generated from the flag table. The .deb
# is the CPU build: Debian ships no cuBLAS, so a CUDA build refuses to make one (GPU builds
# install with `cmake --install`).
include(GNUInstallDirs)

add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/attnbench.1
  COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:attnbench> -DOUT=${CMAKE_BINARY_DIR}/attnbench.1
          -P ${CMAKE_SOURCE_DIR}/cmake/man.cmake
  DEPENDS attnbench ${CMAKE_SOURCE_DIR}/cmake/man.cmake
  COMMENT "Generating the man page attnbench.1 (attnbench --man)")
add_custom_target(man ALL DEPENDS ${CMAKE_BINARY_DIR}/attnbench.1)

configure_file(${CMAKE_SOURCE_DIR}/cmake/attnbench.pc.in ${CMAKE_BINARY_DIR}/attnbench.pc @ONLY)

install(TARGETS attnbench RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
if(EXISTS ${CMAKE_SOURCE_DIR}/include/attnbench/backend.h)
  install(FILES ${CMAKE_SOURCE_DIR}/include/attnbench/backend.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/attnbench)
endif()
install(FILES ${CMAKE_BINARY_DIR}/attnbench.pc DESTINATION ${CMAKE_INSTALL_DATADIR}/pkgconfig)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/suites/ DESTINATION ${CMAKE_INSTALL_DATADIR}/attnbench/suites)
install(FILES ${CMAKE_BINARY_DIR}/attnbench.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${ATTN_DATASETS_DIR}/kjv.txt ${ATTN_DATASETS_DIR}/kjv.model
        DESTINATION ${CMAKE_INSTALL_DATADIR}/attnbench/datasets)

set(CPACK_PACKAGE_NAME attnbench)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "attnbench maintainers <attnbench@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "long-context attention evaluation and benchmarking suite (CPU build)")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
# The shared libraries the binary links, by their Debian 12 packages (dpkg -S of each `ldd` line):
# libmpi.so.40 libopenmpi3, libjansson.so.4 libjansson4, libcsv.so.3 libcsv3, libsentencepiece*.so.0
# libsentencepiece0, libopenblas.so.0 libopenblas0 (any of its -pthread/-openmp/-serial flavours).
# dpkg-shlibdeps, where present, finds the same names from the binary with their minimum versions
# (and libc6, libstdc++6, libgcc-s1); the list is written out only for where it is not.
find_program(ATTN_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(ATTN_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "libjansson4, libcsv3, libsentencepiece0, libopenblas0 | libopenblas.so.0, libstdc++6")
  if(ATTN_HAVE_MPI)
    string(APPEND CPACK_DEBIAN_PACKAGE_DEPENDS ", libopenmpi3")
  endif()
endif()
if(ATTN_HAVE_MPI)
  set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "openmpi-bin") # mpirun, for --transport mpi
endif()
set(ATTN_PACKAGE_CUDA ${ATTN_HAVE_CUDA})
configure_file(${CMAKE_SOURCE_DIR}/cmake/cpack_options.cmake.in ${CMAKE_BINARY_DIR}/cpack_options.cmake @ONLY)
set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_BINARY_DIR}/cpack_options.cmake)
include(CPack)
