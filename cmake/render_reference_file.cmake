# Run by the build (cmake/cli_reference.cmake): writes OUTPUT, what
# `PROGRAM ENTRY INPUT` prints (hvsock __man hvsock.1.template), or INPUT as
# it is when PROGRAM is empty; with GZIP, OUTPUT.gz as well (gzip -n -9: no
# name or time stamp inside, so rebuilds are identical).
#   cmake -DPROGRAM=... -DENTRY=... -DINPUT=... -DOUTPUT=... [-DGZIP=ON] -P this
if(PROGRAM)
  execute_process(COMMAND ${PROGRAM} ${ENTRY} ${INPUT} OUTPUT_FILE ${OUTPUT}
                  RESULT_VARIABLE status ERROR_VARIABLE errors)
  if(NOT status EQUAL 0)
    file(REMOVE ${OUTPUT})
    message(FATAL_ERROR "${PROGRAM} ${ENTRY} ${INPUT} failed (${status}): ${errors}")
  endif()
else()
  configure_file(${INPUT} ${OUTPUT} COPYONLY)
endif()
if(GZIP)
  execute_process(COMMAND gzip -n -9 -f -k ${OUTPUT} COMMAND_ERROR_IS_FATAL ANY)
endif()
