package control

import (
	"fmt"
	"time"

	"github.com/jutong/jutong/model/catalog"
)

// Calendar counts working days: Monday to Friday, less public holidays, plus
// the weekend days worked in exchange (调休), in the city's time zone.
type Calendar struct {
	loc      *time.Location
	holidays map[string]bool
	workdays map[string]bool
}

// NewCalendar builds the calendar the catalog declares.
func NewCalendar(c catalog.Calendar) (*Calendar, error) {
	tz := c.Timezone
	if tz == "" {
		tz = "Asia/Shanghai"
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("control: calendar: %w", err)
	}
	cal := &Calendar{loc: loc, holidays: map[string]bool{}, workdays: map[string]bool{}}
	for _, d := range c.Holidays {
		cal.holidays[d] = true
	}
	for _, d := range c.Workdays {
		cal.workdays[d] = true
	}
	return cal, nil
}

// IsWorkday says whether t's date, in the calendar's zone, is a working day.
func (c *Calendar) IsWorkday(t time.Time) bool {
	day := t.In(c.loc).Format(time.DateOnly)
	if c.workdays[day] {
		return true
	}
	if c.holidays[day] {
		return false
	}
	wd := t.In(c.loc).Weekday()
	return wd != time.Saturday && wd != time.Sunday
}

// Deadline is the end of the n-th working day after t: a request made on
// any day is counted from the next working day on, and is due by the last
// instant of its n-th working day.
func (c *Calendar) Deadline(t time.Time, n int) time.Time {
	d := t.In(c.loc)
	day := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, c.loc)
	for counted := 0; counted < n; {
		day = day.AddDate(0, 0, 1)
		if c.IsWorkday(day) {
			counted++
		}
	}
	return day.AddDate(0, 0, 1).Add(-time.Millisecond)
}

// Location is the calendar's time zone.
func (c *Calendar) Location() *time.Location { return c.loc }
