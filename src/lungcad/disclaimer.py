"""The disclaimer, in one place: every page, report, API answer and verdict line shows it."""

# The short form: the one-line verdict of ``lungcad predict`` ends with it.
SHORT_DISCLAIMER = "research software, not a medical device"
DISCLAIMER = (f"lungcad is {SHORT_DISCLAIMER}: its output is not a diagnosis and must not guide "
              "the care of any patient.")
