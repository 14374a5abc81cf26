# What is rendered from the CLI11 definitions at build time, so it says what
# --help says (tools/cli_reference/), and installed with component runtime:
# the man pages hvsock(1) (hvsock __man) and hvsockd(8) (hvsockd --man),
# their prose in packaging/man/; hvsock-static(1), all prose; and the bash
# completion (hvsock completion bash).

# The page's date: the configure day, or SOURCE_DATE_EPOCH's for a
# reproducible build.
string(TIMESTAMP HVSOCK_MAN_DATE "%Y-%m-%d" UTC)
set(HVSOCK_MAN_PRELOAD ${CMAKE_INSTALL_FULL_LIBDIR}/hvsock/libhvsock-preload.so)
set(hvsock_reference_dir ${CMAKE_CURRENT_BINARY_DIR}/reference)
set(hvsock_reference_outputs)
file(MAKE_DIRECTORY ${hvsock_reference_dir}/completion)

# hvsock_reference_file(OUTPUT INPUT GZIP PROGRAM ENTRY): OUTPUT (and with
# GZIP, OUTPUT.gz) from INPUT, through PROGRAM ENTRY when PROGRAM is a target.
function(hvsock_reference_file output input gzip program entry)
  set(outputs ${hvsock_reference_dir}/${output})
  if(gzip)
    list(APPEND outputs ${hvsock_reference_dir}/${output}.gz)
  endif()
  set(depends ${PROJECT_SOURCE_DIR}/cmake/render_reference_file.cmake)
  if(IS_ABSOLUTE ${input})
    list(APPEND depends ${input})
  endif()
  if(program)
    list(APPEND depends ${program})
    set(program_file $<TARGET_FILE:${program}>)
  endif()
  add_custom_command(
    OUTPUT ${outputs}
    COMMAND ${CMAKE_COMMAND} -DPROGRAM=${program_file} -DENTRY=${entry} -DINPUT=${input}
            -DOUTPUT=${hvsock_reference_dir}/${output} -DGZIP=${gzip}
            -P ${PROJECT_SOURCE_DIR}/cmake/render_reference_file.cmake
    DEPENDS ${depends}
    COMMENT "Rendering ${output}"
    VERBATIM)
  set(hvsock_reference_outputs ${hvsock_reference_outputs} ${outputs} PARENT_SCOPE)
endfunction()

foreach(page hvsock.1 hvsockd.8 hvsock-static.1)
  configure_file(packaging/man/${page}.in ${hvsock_reference_dir}/${page}.template @ONLY)
endforeach()
hvsock_reference_file(hvsock.1 ${hvsock_reference_dir}/hvsock.1.template ON hvsock_cli __man)
hvsock_reference_file(hvsockd.8 ${hvsock_reference_dir}/hvsockd.8.template ON hvsockd --man)
hvsock_reference_file(hvsock-static.1 ${hvsock_reference_dir}/hvsock-static.1.template ON "" "")
# `hvsock completion bash`: the template is the word "bash".
hvsock_reference_file(completion/hvsock bash OFF hvsock_cli completion)
add_custom_target(hvsock_reference_files ALL DEPENDS ${hvsock_reference_outputs})

install(FILES ${hvsock_reference_dir}/hvsock.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
        COMPONENT runtime)
if(TARGET hvsock_cli_static)
  install(FILES ${hvsock_reference_dir}/hvsock-static.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
          COMPONENT runtime)
endif()
install(FILES ${hvsock_reference_dir}/hvsockd.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8
        COMPONENT runtime)
install(FILES ${hvsock_reference_dir}/completion/hvsock
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions COMPONENT runtime)
