; Calls of a macro by name prefix; @prefix is filled in from the target profile
; (DEFINE_PROP_ for CPU properties, DEFINE_*_MACHINE for machine types).
(call_expression
  function: (identifier) @macro
  arguments: (argument_list) @arguments
  (#match? @macro "@prefix")) @call
